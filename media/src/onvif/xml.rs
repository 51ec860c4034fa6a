//! A bounded XML tree of what a camera answered: elements by local name (namespaces
//! dropped, as ONVIF devices disagree on prefixes), their attributes and text.

use quick_xml::events::Event;

/// Largest answer read from a camera.
pub const MAX_BYTES: usize = 256 << 10;
const MAX_DEPTH: usize = 32;
const MAX_ELEMENTS: usize = 20_000;

#[derive(Debug, Default, Clone)]
pub struct Element {
    pub name: String,
    pub attrs: Vec<(String, String)>,
    pub text: String,
    pub children: Vec<Element>,
}

fn local(name: &[u8]) -> String {
    let name = name.rsplit(|b| *b == b':').next().unwrap_or(name);
    String::from_utf8_lossy(name).into_owned()
}

/// Appends to an element's text, at most 8 KiB of it.
fn push_text(el: &mut Element, text: &str) -> Option<()> {
    if el.text.len() + text.len() > 8192 {
        return None;
    }
    el.text.push_str(text);
    Some(())
}

impl Element {
    /// Parses `data`; `None` for anything that is not well-formed XML within the bounds.
    pub fn parse(data: &[u8]) -> Option<Element> {
        if data.len() > MAX_BYTES {
            return None;
        }
        let mut reader = quick_xml::Reader::from_reader(data);
        let mut stack: Vec<Element> = vec![Element::default()];
        let mut count = 0usize;
        let mut buf = Vec::new();
        loop {
            let event = reader.read_event_into(&mut buf).ok()?;
            let empty = matches!(event, Event::Empty(_));
            match event {
                Event::Start(e) | Event::Empty(e) if stack.len() <= MAX_DEPTH => {
                    count += 1;
                    if count > MAX_ELEMENTS {
                        return None;
                    }
                    let attrs = e
                        .attributes()
                        .flatten()
                        .map(|a| {
                            (
                                local(a.key.as_ref()),
                                String::from_utf8_lossy(&a.value).into_owned(),
                            )
                        })
                        .collect();
                    let el = Element {
                        name: local(e.name().as_ref()),
                        attrs,
                        ..Default::default()
                    };
                    // An empty element closes at once; a start waits for its end.
                    if empty {
                        stack.last_mut()?.children.push(el);
                    } else {
                        stack.push(el);
                    }
                }
                Event::Start(_) | Event::Empty(_) => return None,
                Event::End(_) => {
                    let done = stack.pop()?;
                    stack.last_mut()?.children.push(done);
                }
                Event::Text(t) => {
                    let text = t.decode().ok()?;
                    // Indentation between elements is not text.
                    if !text.trim().is_empty() {
                        push_text(stack.last_mut()?, &text)?;
                    }
                }
                Event::GeneralRef(r) => {
                    let c = match r.resolve_char_ref().ok()? {
                        Some(c) => c,
                        None => match r.decode().ok()?.as_ref() {
                            "amp" => '&',
                            "lt" => '<',
                            "gt" => '>',
                            "quot" => '"',
                            "apos" => '\'',
                            _ => return None,
                        },
                    };
                    push_text(stack.last_mut()?, c.encode_utf8(&mut [0; 4]))?;
                }
                Event::CData(t) => {
                    stack
                        .last_mut()?
                        .text
                        .push_str(&String::from_utf8_lossy(&t));
                }
                Event::Eof => break,
                _ => {}
            }
            buf.clear();
        }
        if stack.len() != 1 {
            return None;
        }
        stack.pop()?.children.into_iter().next()
    }

    /// The first descendant (or self) named `name`, depth first.
    pub fn find(&self, name: &str) -> Option<&Element> {
        if self.name == name {
            return Some(self);
        }
        self.children.iter().find_map(|c| c.find(name))
    }

    /// Every descendant (or self) named `name`.
    pub fn find_all<'a>(&'a self, name: &str, out: &mut Vec<&'a Element>) {
        if self.name == name {
            out.push(self);
            return;
        }
        for c in &self.children {
            c.find_all(name, out);
        }
    }

    /// The text of the first descendant named `name`, trimmed.
    pub fn text_of(&self, name: &str) -> Option<String> {
        self.find(name)
            .map(|e| e.text.trim().to_string())
            .filter(|t| !t.is_empty())
    }

    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_lose_their_prefixes_and_text_is_unescaped() {
        let x = br#"<?xml version="1.0"?><s:Envelope xmlns:s="x"><s:Body><trt:Profiles token="p1"><tt:Name>Main &amp; 1&#33;</tt:Name><tt:Empty/></trt:Profiles></s:Body></s:Envelope>"#;
        let e = Element::parse(x).expect("xml");
        assert_eq!(e.name, "Envelope");
        let p = e.find("Profiles").expect("profiles");
        assert_eq!(p.attr("token"), Some("p1"));
        assert_eq!(p.text_of("Name").as_deref(), Some("Main & 1!"));
        assert!(p.find("Empty").is_some());
    }

    #[test]
    fn malformed_deep_or_huge_input_is_refused() {
        assert!(Element::parse(b"<a><b></a>").is_none());
        assert!(Element::parse(b"<a>").is_none());
        let deep = "<a>".repeat(40) + &"</a>".repeat(40);
        assert!(Element::parse(deep.as_bytes()).is_none());
        let wide = format!("<a>{}</a>", "<b/>".repeat(MAX_ELEMENTS + 1));
        assert!(Element::parse(wide.as_bytes()).is_none());
        assert!(Element::parse(&vec![b' '; MAX_BYTES + 1]).is_none());
        assert!(Element::parse(&[0xff, 0xfe, 0x00]).is_none());
    }
}
