//! Markdown to HTML for messages, treating the text as untrusted: raw HTML in a reply
//! or a message is shown as text, links keep only safe schemes, and images become
//! plain links so a reply can never make the browser fetch anything by itself (which
//! would tell a server something about the conversation).

use pulldown_cmark::{CowStr, Event, LinkType, Options, Parser, Tag, TagEnd, html};

/// Renders `text` to HTML that is safe to put into the page.
pub fn render(text: &str) -> String {
    let options = Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH | Options::ENABLE_TASKLISTS;
    let mut in_image = false;
    let events = Parser::new_ext(text, options).filter_map(|event| match event {
        // Raw HTML becomes visible text; pulldown-cmark escapes text events.
        Event::Html(raw) | Event::InlineHtml(raw) => Some(Event::Text(raw)),
        Event::Start(Tag::Link { link_type, dest_url, title, id }) => Some(Event::Start(Tag::Link {
            link_type,
            dest_url: safe_url(dest_url),
            title,
            id,
        })),
        Event::Start(Tag::Image { dest_url, title, id, .. }) => {
            in_image = true;
            Some(Event::Start(Tag::Link { link_type: LinkType::Inline, dest_url: safe_url(dest_url), title, id }))
        }
        Event::End(TagEnd::Image) if in_image => {
            in_image = false;
            Some(Event::End(TagEnd::Link))
        }
        other => Some(other),
    });
    let mut out = String::with_capacity(text.len() * 3 / 2);
    html::push_html(&mut out, events);
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
    use super::render;

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
    fn images_become_links_and_load_nothing() {
        let html = render("![tracker](https://example.org/pixel.png)");
        assert!(!html.contains("<img"), "{html}");
        assert!(html.contains("<a href=\"https://example.org/pixel.png\">tracker</a>"), "{html}");
    }
}
