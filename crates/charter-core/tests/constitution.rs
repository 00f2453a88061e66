//! The constitution as data and the composer's guarantees, with a word count standing in
//! for a tokenizer (the real tokenizers are in charter-engine's tests): every unit
//! parses, malformed units are refused with a line, budgets are monotone and
//! deterministic, and operator and user layers cannot switch off what they may not.

use std::collections::BTreeSet;

use charter_core::constitution::compose::OPERATOR_HEADING;
use charter_core::constitution::unit::parse_unit;
use charter_core::constitution::*;

fn words(text: &str) -> Result<usize, String> {
    Ok(text.split_whitespace().count())
}

fn builtin() -> Constitution {
    Constitution::builtin().expect("the shipped constitution parses")
}

fn ids(c: &Composed) -> BTreeSet<String> {
    c.units.iter().map(|u| u.id.clone()).collect()
}

#[test]
fn the_shipped_constitution_covers_every_kind_and_protection() {
    let c = builtin();
    for kind in &c.manifest.kinds {
        assert!(c.units.iter().any(|u| u.kind == *kind), "no unit of kind {kind:?}");
    }
    for id in ["priorities", "hard-limits", "principals", "authority-claims", "tell-limits", "not-human", "emergency", "dignity", "character", "style"] {
        assert!(c.unit(id).is_some(), "missing unit {id}");
    }
    for u in c.units.iter().filter(|u| u.tier == Tier::Always) {
        assert!(u.text(Form::Micro).is_some(), "{} lacks micro", u.id);
    }
    assert_eq!(c.profile_for("SmolLM2 135M Instruct", "llama").0, "smollm2");
    assert_eq!(c.profile_for("gemma-3-270m", "gemma3").0, "gemma3");
    assert_eq!(c.profile_for("Qwen2.5", "qwen2").0, "default");
}

#[test]
fn malformed_units_are_refused_with_their_line() {
    let ok = "+++\nid = \"x\"\nkind = \"style\"\nrank = 1\ntier = \"always\"\nadjustable_by = \"none\"\n+++\n\n## micro\n\nBe brief.\n";
    assert_eq!(parse_unit(ok).expect("parses").text(Form::Micro), Some("Be brief."));
    let cases: [(&str, usize, &str); 7] = [
        ("id = \"x\"\n", 1, "`+++`"),
        (&ok.replace("rank = 1", "rank = \"one\""), 4, "front matter"),
        (&ok.replace("tier = \"always\"", "tier = \"always\"\ncolour = \"red\""), 6, "colour"),
        (&ok.replace("## micro", "## tiny"), 9, "unknown section"),
        (&ok.replace("\nBe brief.\n", "\n"), 9, "empty"),
        (&ok.replace("## micro", "## short"), 7, "micro"),
        (&ok.replace("kind = \"style\"", "kind = \"hard_limit\"").replace("\"none\"", "\"operator\""), 2, "hard limit"),
    ];
    for (text, line, needle) in cases {
        let e = parse_unit(text).expect_err("malformed");
        assert_eq!(e.line, line, "{text:?}: {e:?}");
        assert!(e.message.contains(needle), "{text:?}: {e:?}");
    }
    let bad = Constitution::from_sources(include_str!("../../../constitution/manifest.toml"), &[("y.md", ok)]);
    let e = bad.expect_err("id must match the file");
    assert_eq!(e.file, "y.md");
    assert!(e.to_string().starts_with("y.md:2:"), "{e}");
}

#[test]
fn budgets_are_monotone_ordered_and_deterministic() {
    let c = builtin();
    let importance: Vec<String> = {
        let mut units: Vec<&Unit> = c.units.iter().collect();
        let kind = |u: &Unit| c.manifest.kinds.iter().position(|k| *k == u.kind);
        units.sort_by_key(|u| (u.tier, kind(u), u.rank));
        units.iter().map(|u| u.id.clone()).collect()
    };
    let always: BTreeSet<String> = c.units.iter().filter(|u| u.tier == Tier::Always).map(|u| u.id.clone()).collect();
    let minimum = match compose(&c, 0, None, None, &words) {
        Err(ComposeError::TooSmall { needed, .. }) => needed,
        other => panic!("a zero budget must fail: {other:?}"),
    };
    assert!(compose(&c, minimum - 1, None, None, &words).is_err());
    let mut previous: Option<Composed> = None;
    for budget in (minimum..minimum + 1600).step_by(7) {
        let composed = compose(&c, budget, None, None, &words).expect("fits");
        assert!(composed.tokens <= budget, "{} tokens over a budget of {budget}", composed.tokens);
        assert!(always.is_subset(&ids(&composed)), "an always unit is missing at {budget}");
        // No unit without every more important one.
        let present = ids(&composed);
        let last = importance.iter().rposition(|id| present.contains(id)).unwrap_or(0);
        assert!(importance[..=last].iter().all(|id| present.contains(id)), "a gap in importance at {budget}: {present:?}");
        if let Some(prev) = &previous {
            assert!(ids(prev).is_subset(&present), "budget {budget} lost a unit");
            for u in &prev.units {
                let now = composed.units.iter().find(|x| x.id == u.id).expect("kept");
                assert!(now.form >= u.form, "budget {budget} shortened {}", u.id);
            }
        }
        assert_eq!(compose(&c, budget, None, None, &words).expect("fits"), composed, "not deterministic");
        previous = Some(composed);
    }
    let all = previous.expect("composed");
    assert!(all.units.iter().all(|u| u.form == Form::Long), "a generous budget takes every long form");
    assert!(!all.operator_block);
}

#[test]
fn operators_cannot_switch_off_hard_limits_or_user_protections() {
    let c = builtin();
    for (config, unit) in [
        ("disable = [\"hard-limits\"]", "hard-limits"),
        ("disable = [\"not-human\"]", "not-human"),
        ("disable = [\"emergency\"]", "emergency"),
        ("users_may_adjust = [\"balanced-views\"]", "balanced-views"),
        ("users_may_adjust = [\"hard-limits\"]", "hard-limits"),
        ("disable = [\"no-such-unit\"]", "no-such-unit"),
    ] {
        let e = OperatorConfig::parse(config, &c).expect_err(config);
        assert!(e.to_string().contains(unit), "{config}: {e}");
    }
    let e = OperatorConfig::parse("instructions = \"x\"\npowers = 1", &c).expect_err("unknown field");
    assert!(e.to_string().contains("powers"), "{e}");
    let long = format!("instructions = \"{}\"", "a".repeat(operator::MAX_INSTRUCTION_CHARS + 1));
    assert!(matches!(OperatorConfig::parse(&long, &c), Err(OperatorError::TooLong { .. })));
    // JSON is the same format.
    let json = OperatorConfig::parse(r#"{"persona": "Ada", "disable": ["balanced-views"]}"#, &c).expect("json");
    assert_eq!(json.persona.as_deref(), Some("Ada"));
}

#[test]
fn an_allowed_toggle_removes_exactly_its_unit() {
    let c = builtin();
    let full = compose(&c, 100_000, None, None, &words).expect("fits");
    let op = OperatorConfig::parse("disable = [\"balanced-views\"]", &c).expect("allowed");
    let less = compose(&c, 100_000, Some(&op), None, &words).expect("fits");
    let mut expected = ids(&full);
    expected.remove("balanced-views");
    assert_eq!(ids(&less), expected);
    assert!(!less.operator_block, "switches alone add no block");
}

#[test]
fn operator_text_appears_once_after_the_units() {
    let c = builtin();
    let op = OperatorConfig::parse(
        "persona = \"Ada\"\nscope = \"Questions about Bakerloo Bakery's bread and orders.\"\ninstructions = \"Recommend the sourdough when asked for a favourite.\"",
        &c,
    )
    .expect("valid");
    for budget in [200, 400, 100_000] {
        let composed = compose(&c, budget, Some(&op), None, &words).expect("fits");
        assert!(composed.operator_block);
        assert_eq!(composed.text.matches("Recommend the sourdough").count(), 1);
        assert_eq!(composed.text.matches(OPERATOR_HEADING).count(), 1);
        assert!(composed.text.trim_end().ends_with("Recommend the sourdough when asked for a favourite."), "{}", composed.text);
        assert!(composed.text.contains("go by the name Ada"));
        let heading = composed.text.find(OPERATOR_HEADING).expect("heading");
        for u in &composed.units {
            let t = c.unit(&u.id).and_then(|x| x.text(u.form)).expect("text");
            assert!(composed.text.find(t).expect("unit text") < heading, "{} after the operator block", u.id);
        }
    }
    let wordy = OperatorConfig { instructions: "word ".repeat(operator::MAX_INSTRUCTION_TOKENS + 1), ..Default::default() };
    assert!(matches!(compose(&c, 100_000, Some(&wordy), None, &words), Err(ComposeError::OperatorTooLong { .. })));
}

#[test]
fn user_settings_pass_the_same_check_one_level_lower() {
    let c = builtin();
    let user = UserSettings { disable: vec!["casual-language".into()] };
    user.validate(&c, None).expect("users may adjust casual language");
    let op = OperatorConfig::default();
    let e = user.validate(&c, Some(&op)).expect_err("the operator has not passed it on");
    assert!(e.to_string().contains("casual-language"), "{e}");
    let op = OperatorConfig::parse("users_may_adjust = [\"casual-language\"]", &c).expect("valid");
    user.validate(&c, Some(&op)).expect("passed on");
    for id in ["honesty", "balanced-views", "dignity", "hard-limits"] {
        let e = UserSettings { disable: vec![id.into()] }.validate(&c, Some(&op)).expect_err(id);
        assert!(e.to_string().contains(id), "{e}");
    }
    let composed = compose(&c, 100_000, Some(&op), Some(&user), &words).expect("fits");
    assert!(!ids(&composed).contains("casual-language"));
}

#[test]
fn spans_say_which_unit_wrote_each_byte_of_the_block() {
    let c = builtin();
    let operator = OperatorConfig { persona: Some("Crumb".into()), instructions: "Talk about bread.".into(), ..Default::default() };
    let composed = compose(&c, 400, Some(&operator), None, &words).expect("fits");
    let span_ids: Vec<&str> = composed.spans.iter().map(|s| s.id.as_str()).collect();
    let mut unit_ids: Vec<&str> = composed.units.iter().map(|u| u.id.as_str()).collect();
    unit_ids.push(OPERATOR_UNIT);
    assert_eq!(span_ids, unit_ids, "one span per unit, in the order of the text, the operator's last");
    for span in &composed.spans {
        let text = &composed.text[span.start..span.end];
        match c.unit(&span.id) {
            Some(unit) => {
                let form = composed.units.iter().find(|u| u.id == span.id).expect("listed").form;
                assert_eq!(Some(text), unit.text(form), "{}", span.id);
            }
            None => assert!(text.starts_with(compose::OPERATOR_HEADING) && text.contains("Crumb"), "{text}"),
        }
        assert_eq!(composed.unit_at(span.start), Some(span.id.as_str()));
        assert_eq!(composed.unit_at(span.end - 1), Some(span.id.as_str()));
    }
    let last = composed.spans.last().expect("spans");
    assert_eq!(last.end, composed.text.len(), "the spans reach the end of the text");
    assert_eq!(composed.unit_at(composed.text.len()), None);
    let first_gap = composed.spans[0].end;
    assert_eq!(composed.unit_at(first_gap), Some(composed.spans[1].id.as_str()), "a blank line counts to the unit after it");
}

#[test]
fn what_each_party_may_switch_off_is_listed_by_the_same_rules_that_check_it() {
    let c = builtin();
    let operator_may: Vec<&str> = OperatorConfig::switchable(&c).map(|u| u.id.as_str()).collect();
    for id in ["hard-limits", "not-human", "emergency", "dignity", "tell-limits", "priorities"] {
        assert!(!operator_may.contains(&id), "an operator must not be offered {id}");
    }
    for id in &operator_may {
        let config = OperatorConfig { disable: vec![(*id).to_owned()], ..Default::default() };
        assert_eq!(config.validate(&c), Ok(()), "{id} is offered, so it must pass");
    }
    let user_alone: Vec<&str> = UserSettings::switchable(&c, None).map(|u| u.id.as_str()).collect();
    assert!(!user_alone.is_empty(), "some units are the user's to adjust");
    for id in &user_alone {
        assert!(c.unit(id).expect("exists").adjustable_by.by_user());
    }
    let strict = OperatorConfig { scope: Some("bread".into()), ..Default::default() };
    assert_eq!(UserSettings::switchable(&c, Some(&strict)).filter(|u| u.adjustable_by == AdjustableBy::OperatorAndUser).count(), 0,
        "under an operator, units both may adjust are the user's only when the operator passes them on");
    let generous = OperatorConfig { users_may_adjust: vec![user_alone[0].to_owned()], ..Default::default() };
    assert!(UserSettings::switchable(&c, Some(&generous)).any(|u| u.id == user_alone[0]));

    // Both layers at once: the operator's refusal comes first, then the user's under it.
    let user = UserSettings { disable: vec![user_alone[0].to_owned()] };
    assert_eq!(check_layers(&c, Some(&generous), &user), Ok(()));
    assert!(matches!(check_layers(&c, Some(&strict), &user), Err(OperatorError::NotAllowedByOperator { .. })));
    let breaking = OperatorConfig { disable: vec!["hard-limits".into()], ..Default::default() };
    assert!(matches!(check_layers(&c, Some(&breaking), &user), Err(OperatorError::NotAdjustable { who: "operator", .. })));
}

#[test]
fn an_operator_configuration_survives_its_own_toml() {
    let c = builtin();
    let config = OperatorConfig {
        persona: Some("Crumb".into()),
        scope: Some("Questions about \"bread\"\nand pastry".into()),
        disable: vec!["balanced-views".into()],
        users_may_adjust: vec!["style".into()],
        instructions: "Answer in two sentences.".into(),
    };
    let text = config.to_toml();
    assert_eq!(OperatorConfig::parse(&text, &c), Ok(config));
    assert!(OperatorConfig::default().is_empty());
    assert_eq!(OperatorConfig::default().to_toml().trim(), "");
}
