//! Numbers for people: sizes, rates and times left.

/// Bytes as `12.3 MB` (decimal units, as browsers and disks report them).
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 { format!("{n} B") } else { format!("{value:.1} {}", UNITS[unit]) }
}

/// Seconds as `1 h 02 min`, `3 min 05 s` or `42 s`.
pub fn duration(seconds: f64) -> String {
    if !seconds.is_finite() || seconds < 0.0 {
        return "unknown".into();
    }
    let s = seconds.round() as u64;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min {:02} s", s / 60, s % 60),
        _ => format!("{} h {:02} min", s / 3600, (s % 3600) / 60),
    }
}

/// Download progress as one line: done of total, percent, speed and time left.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rate {
    samples: Vec<(f64, u64)>,
}

impl Rate {
    /// Records `done` bytes at `t` seconds; keeps the last five seconds.
    pub fn record(&mut self, t: f64, done: u64) {
        if self.samples.last().is_some_and(|&(_, d)| done < d) {
            self.samples.clear();
        }
        self.samples.push((t, done));
        self.samples.retain(|&(ts, _)| t - ts <= 5.0);
    }

    /// Bytes per second over the window.
    pub fn per_second(&self) -> Option<f64> {
        let (t0, d0) = *self.samples.first()?;
        let (t1, d1) = *self.samples.last()?;
        (t1 - t0 > 0.2).then(|| (d1 - d0) as f64 / (t1 - t0))
    }

    /// The progress line.
    pub fn describe(&self, done: u64, total: Option<u64>) -> String {
        let speed = self.per_second();
        let mut line = match total {
            Some(t) if t > 0 => format!("{} of {} ({:.0}%)", bytes(done), bytes(t), done as f64 * 100.0 / t as f64),
            _ => bytes(done),
        };
        if let Some(speed) = speed {
            line.push_str(&format!(", {}/s", bytes(speed as u64)));
            if let Some(t) = total {
                if speed > 0.0 && t >= done {
                    line.push_str(&format!(", {} left", duration((t - done) as f64 / speed)));
                }
            }
        }
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_naturally() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(999), "999 B");
        assert_eq!(bytes(98_362_432), "98.4 MB");
        assert_eq!(bytes(2_500_000_000), "2.5 GB");
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(duration(4.4), "4 s");
        assert_eq!(duration(125.0), "2 min 05 s");
        assert_eq!(duration(3720.0), "1 h 02 min");
        assert_eq!(duration(f64::NAN), "unknown");
    }

    #[test]
    fn progress_has_percent_speed_and_time_left() {
        let mut rate = Rate::default();
        rate.record(0.0, 0);
        rate.record(2.0, 20_000_000);
        assert_eq!(rate.describe(20_000_000, Some(100_000_000)), "20.0 MB of 100.0 MB (20%), 10.0 MB/s, 8 s left");
        // A restart from zero forgets the old samples instead of reporting a negative speed.
        rate.record(3.0, 0);
        assert_eq!(rate.per_second(), None);
    }
}
