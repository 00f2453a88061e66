//! Markdown to HTML for messages, treating the text as untrusted: raw HTML in a reply
//! or a message is shown as text, links keep only safe schemes, and images become
//! plain links so a reply can never make the browser fetch anything by itself (which
//! would tell a server something about the conversation). Code blocks get a Copy
//! button. A reply being streamed is split into its top-level [`blocks`], so the page
//! renders again only the block being written, not the whole reply per token.

use std::ops::Range;

use pulldown_cmark::{CowStr, Event, LinkType, Options, Parser, Tag, TagEnd, html};

const OPTIONS: Options = Options::ENABLE_TABLES.union(Options::ENABLE_STRIKETHROUGH).union(Options::ENABLE_TASKLISTS);

/// What goes before a code block: its Copy button (the page copies the `<pre>` beside
/// it; the markup is Charter's own, never the text's).
const CODE_OPEN: &str = "<div class=\"code\"><button type=\"button\" class=\"copy-code\" data-testid=\"copy-code\">Copy</button>";

/// Renders `text` to HTML that is safe to put into the page.
pub fn render(text: &str) -> String {
    let mut in_image = false;
    let events = Parser::new_ext(text, OPTIONS).flat_map(|event| {
        let (before, event, after) = match event {
            // Raw HTML becomes visible text; pulldown-cmark escapes text events.
            Event::Html(raw) | Event::InlineHtml(raw) => (None, Event::Text(raw), None),
            Event::Start(Tag::Link { link_type, dest_url, title, id }) => {
                (None, Event::Start(Tag::Link { link_type, dest_url: safe_url(dest_url), title, id }), None)
            }
            Event::Start(Tag::Image { dest_url, title, id, .. }) => {
                in_image = true;
                (None, Event::Start(Tag::Link { link_type: LinkType::Inline, dest_url: safe_url(dest_url), title, id }), None)
            }
            Event::End(TagEnd::Image) if in_image => {
                in_image = false;
                (None, Event::End(TagEnd::Link), None)
            }
            Event::Start(Tag::CodeBlock(kind)) => (Some(Event::Html(CODE_OPEN.into())), Event::Start(Tag::CodeBlock(kind)), None),
            Event::End(TagEnd::CodeBlock) => (None, Event::End(TagEnd::CodeBlock), Some(Event::Html("</div>\n".into()))),
            other => (None, other, None),
        };
        before.into_iter().chain(std::iter::once(event)).chain(after)
    });
    let mut out = String::with_capacity(text.len() * 3 / 2);
    html::push_html(&mut out, events);
    out
}

/// The byte ranges of `text`'s top-level blocks (paragraphs, headings, lists, code
/// blocks, quotes, tables), in order, together covering everything but blank lines.
/// While text is appended, every block but the last is settled: CommonMark lets new
/// lines change only the block they continue (a list, an open fence, a paragraph
/// becoming a heading or a table). Link reference definitions are the exception, so the
/// finished reply is rendered whole.
pub fn blocks(text: &str) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut depth = 0usize;
    for (event, range) in Parser::new_ext(text, OPTIONS).into_offset_iter() {
        match event {
            Event::Start(_) => {
                if depth == 0 {
                    out.push(range);
                }
                depth += 1;
            }
            Event::End(_) => depth = depth.saturating_sub(1),
            // A leaf at the top level (a rule, top-level HTML).
            _ if depth == 0 => out.push(range),
            _ => {}
        }
    }
    // Each block runs to the next one's start, so the slices rebuild the text (their
    // trailing newlines included) and a block's text changes only when it does.
    let starts: Vec<usize> = out.iter().map(|r| r.start).collect();
    for (i, r) in out.iter_mut().enumerate() {
        r.end = starts.get(i + 1).copied().unwrap_or(text.len());
    }
    if let Some(first) = out.first_mut() {
        first.start = 0;
    }
    out
}

/// Keeps http(s), mailto, fragment and relative links; anything else (`javascript:`,
/// `data:`, `vbscript:`, obfuscated variants) becomes `#`.
fn safe_url(url: CowStr<'_>) -> CowStr<'_> {
    let cleaned: String = url.chars().filter(|c| !c.is_whitespace() && !c.is_control()).collect::<String>().to_ascii_lowercase();
    let scheme_end = cleaned.find(|c: char| c == ':' || c == '/' || c == '?' || c == '#');
    let has_scheme = scheme_end.is_some_and(|i| cleaned[i..].starts_with(':'));
    let allowed = !has_scheme
        || cleaned.starts_with("http:")
        || cleaned.starts_with("https:")
        || cleaned.starts_with("mailto:");
    // pulldown-cmark has already decoded entities (`&#106;avascript:`) in `url`.
    if allowed { url } else { CowStr::Borrowed("#") }
}

#[cfg(test)]
mod tests {
    use super::{blocks, render};

    #[test]
    fn formatting_and_code_blocks_render() {
        let html = render("**bold** and `code`\n\n```rust\nfn main() {}\n```\n\n- a\n- b");
        assert!(html.contains("<strong>bold</strong>"), "{html}");
        assert!(html.contains("<code>code</code>"), "{html}");
        assert!(html.contains("<pre><code class=\"language-rust\">fn main() {}"), "{html}");
        assert!(html.contains("<li>a</li>"), "{html}");
    }

    #[test]
    fn raw_html_is_shown_as_text() {
        for payload in [
            "<script>alert(1)</script>",
            "<img src=x onerror=alert(1)>",
            "hello <b onmouseover=alert(1)>x</b>",
            "<iframe src=\"javascript:alert(1)\"></iframe>",
            "<svg onload=alert(1)>",
        ] {
            let html = render(payload);
            assert!(!html.contains("<script"), "{html}");
            assert!(!html.contains("<img"), "{html}");
            assert!(!html.contains("<b "), "{html}");
            assert!(!html.contains("<iframe"), "{html}");
            assert!(!html.contains("<svg"), "{html}");
            assert!(html.contains("&lt;"), "{payload} lost its text: {html}");
        }
    }

    #[test]
    fn dangerous_link_schemes_are_neutralised() {
        for payload in [
            "[x](javascript:alert(1))",
            "[x](JaVaScRiPt:alert(1))",
            "[x](java\tscript:alert(1))",
            "[x](data:text/html,<script>alert(1)</script>)",
            "[x](vbscript:msgbox)",
            "<javascript:alert(1)>",
            "[x](&#106;avascript:alert(1))",
        ] {
            let html = render(payload);
            let hrefs: Vec<&str> = html.split("href=\"").skip(1).filter_map(|s| s.split('"').next()).collect();
            assert!(hrefs.iter().all(|h| *h == "#"), "{payload}: {html}");
        }
        assert!(render("[ok](https://example.org/a?b=c)").contains("href=\"https://example.org/a?b=c\""));
        assert!(render("[rel](/docs#x)").contains("href=\"/docs#x\""));
    }

    #[test]
    fn code_blocks_carry_a_copy_button_that_text_cannot_forge() {
        let html = render("```\nlet x = 1;\n```");
        assert!(html.starts_with("<div class=\"code\"><button type=\"button\" class=\"copy-code\""), "{html}");
        assert!(html.contains("<pre><code>let x = 1;\n</code></pre>\n</div>"), "{html}");
        let forged = render("<button class=\"copy-code\">Copy</button>");
        assert!(!forged.contains("<button"), "{forged}");
    }

    #[test]
    fn blocks_split_a_reply_and_rebuild_it() {
        let text = "# Title\n\nA paragraph\nacross lines.\n\n- one\n- two\n\n```rust\nfn f() {}\n```\n\n---\n> quoted\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\ntail";
        let ranges = blocks(text);
        let parts: Vec<&str> = ranges.iter().map(|r| &text[r.clone()]).collect();
        assert_eq!(parts.concat(), text);
        assert_eq!(parts.len(), 8, "{parts:?}");
        assert!(parts[0].starts_with("# Title") && parts[2].starts_with("- one") && parts[3].starts_with("```rust"));
        assert_eq!(parts[7], "tail");
        // Rendered one by one, the blocks give the whole reply's HTML.
        assert_eq!(parts.iter().map(|p| render(p)).collect::<String>(), render(text));
        assert!(blocks("").is_empty());
    }

    #[test]
    fn appending_text_changes_only_the_last_block() {
        let text = "Intro.\n\n1. first\n2. second\n\n```\ncode\nmore\n```\n\nTitle\n=====\n\nThe end, with *emphasis*.";
        // Every prefix, as a stream would show it: the settled blocks of each prefix are
        // blocks of the whole text, and the text's blocks grow only at the end.
        let whole = blocks(text);
        for cut in (0..=text.len()).filter(|&i| text.is_char_boundary(i)) {
            let prefix = &text[..cut];
            let ranges = blocks(prefix);
            for r in ranges.iter().take(ranges.len().saturating_sub(1)) {
                assert!(whole.contains(r), "at {cut}: settled block {:?} is not a block of the whole text", &prefix[r.clone()]);
            }
        }
    }

    #[test]
    fn images_become_links_and_load_nothing() {
        let html = render("![tracker](https://example.org/pixel.png)");
        assert!(!html.contains("<img"), "{html}");
        assert!(html.contains("<a href=\"https://example.org/pixel.png\">tracker</a>"), "{html}");
    }
}
