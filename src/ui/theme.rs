//! Color themes: TOML palettes with `inherits`.
//!
//! A theme file has an optional `inherits = "parent"`, a `[palette]` of
//! named colors and a `[ui]` table mapping style slots (see [`SLOTS`]) to
//! styles:
//!
//! ```toml
//! inherits = "default"
//! [palette]
//! accent = "#005f87"          # "#rrggbb", an ANSI name, a 0–255 index, "reset"
//! [ui]
//! "status.ok" = "accent"      # foreground only: palette name or color
//! "list.selected" = { fg = "white", bg = "accent", modifiers = ["bold"] }
//! ```
//!
//! Slot names contain dots, so they are quoted keys. Palettes are merged
//! along the inheritance chain (a child's palette entry overrides its
//! parent's, also for slots the parent defines), so a theme such as `light`
//! only needs to redefine colors. A slot defined in a theme replaces the
//! inherited style entirely. A slot defined nowhere in the chain falls back
//! to the bundled `default` theme and a warning is recorded. Errors (a bad
//! color, an unknown palette name, a bad modifier, an inheritance cycle)
//! name the file and the slot or palette entry.
//!
//! Bundled themes are embedded from `<crate root>/themes/`; a file
//! `NAME.toml` in the user theme directory (`$XDG_CONFIG_HOME/ctiphone/themes`)
//! wins over a bundled theme of the same name. A user theme may inherit the
//! bundled theme it replaces (`default.toml` with `inherits = "default"`).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::str::FromStr;

use ratatui::style::{Color, Modifier, Style};

/// Every style slot the UI uses. The bundled `default` theme defines all.
pub const SLOTS: &[&str] = &[
    "ui.text",
    "ui.dim",
    "ui.border",
    "ui.title",
    "status.bar",
    "status.ok",
    "status.warn",
    "status.error",
    "call.ringing",
    "call.active",
    "call.held",
    "list.header",
    "list.selected",
    "popup.border",
    "popup.title",
    "popup.label",
    "popup.value",
    "popup.searching",
    "popup.error",
    "button",
    "button.focused",
    "help.key",
    "input",
    "input.invalid",
    "log.info",
    "log.warn",
    "log.error",
    "settings.changed",
];

/// The theme every other theme ultimately falls back to.
const DEFAULT: &str = "default";

const BUNDLED: &[(&str, &str)] = &[
    ("default", include_str!("../../themes/default.toml")),
    ("light", include_str!("../../themes/light.toml")),
    ("high-contrast", include_str!("../../themes/high-contrast.toml")),
    ("mono", include_str!("../../themes/mono.toml")),
];

const BUNDLED_NAMES: &[&str] = &["default", "light", "high-contrast", "mono"];

/// Longest inheritance chain accepted.
const MAX_DEPTH: usize = 16;

/// Largest user theme file read.
const MAX_FILE_BYTES: u64 = 256 * 1024;

/// A resolved theme: one [`Style`] per slot.
#[derive(Debug, Clone, PartialEq)]
pub struct Theme {
    name: String,
    styles: BTreeMap<&'static str, Style>,
    warnings: Vec<String>,
}

impl Theme {
    /// Loads theme `name`, from `user_dir/NAME.toml` if that file exists,
    /// else from the bundled themes, resolving `inherits` recursively.
    pub fn load(name: &str, user_dir: Option<&Path>) -> Result<Theme, String> {
        let mut resolved = resolve(name, user_dir)?;
        let missing: Vec<&'static str> = SLOTS
            .iter()
            .copied()
            .filter(|s| !resolved.styles.contains_key(s))
            .collect();
        if !missing.is_empty() {
            let fallback = resolve(DEFAULT, None).ok();
            for slot in missing {
                let style = fallback
                    .as_ref()
                    .and_then(|f| f.styles.get(slot).copied())
                    .unwrap_or_default();
                resolved.styles.insert(slot, style);
                resolved.warnings.push(format!(
                    "theme \"{name}\": slot \"{slot}\" not defined, using the default theme's"
                ));
            }
        }
        Ok(Theme {
            name: name.to_owned(),
            styles: resolved.styles,
            warnings: resolved.warnings,
        })
    }

    /// Names of the themes compiled into the binary.
    pub fn bundled() -> &'static [&'static str] {
        BUNDLED_NAMES
    }

    /// The name the theme was loaded under.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The style for `slot`; an unknown slot gives the plain style.
    pub fn style(&self, slot: &str) -> Style {
        self.styles.get(slot).copied().unwrap_or_default()
    }

    /// Non-fatal problems found while loading (missing slots, unknown keys).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// This theme without colors, for `NO_COLOR`: modifiers are kept, colors
    /// dropped, and a slot that relied on a background color (a selection,
    /// a focused button, the status bar) gains `REVERSED` so it stays
    /// visible.
    pub fn monochrome(&self) -> Theme {
        let styles = self
            .styles
            .iter()
            .map(|(&slot, s)| {
                let mut m = Style::default()
                    .add_modifier(s.add_modifier)
                    .remove_modifier(s.sub_modifier);
                if matches!(s.bg, Some(c) if c != Color::Reset) {
                    m = m.add_modifier(Modifier::REVERSED);
                }
                (slot, m)
            })
            .collect();
        Theme {
            name: self.name.clone(),
            styles,
            warnings: self.warnings.clone(),
        }
    }
}

impl Default for Theme {
    /// The bundled `default` theme.
    fn default() -> Self {
        Theme::load(DEFAULT, None).unwrap_or_else(|e| Theme {
            name: DEFAULT.to_owned(),
            styles: BTreeMap::new(),
            warnings: vec![e],
        })
    }
}

/// One theme file before palette names are resolved.
struct Layer {
    /// Where it came from, for messages: a path or `<bundled>/NAME.toml`.
    label: String,
    inherits: Option<String>,
    palette: Vec<(String, Color)>,
    slots: Vec<(&'static str, Spec)>,
}

/// A slot's style with color names still unresolved.
struct Spec {
    fg: Option<String>,
    bg: Option<String>,
    modifiers: Modifier,
}

struct Resolved {
    styles: BTreeMap<&'static str, Style>,
    warnings: Vec<String>,
}

/// Loads the chain starting at `name` and resolves it, without the
/// fallback to `default` for missing slots.
fn resolve(name: &str, user_dir: Option<&Path>) -> Result<Resolved, String> {
    let mut warnings = Vec::new();
    // (from user dir, name) of every file loaded so far, child first.
    let mut seen: Vec<(bool, String)> = Vec::new();
    let mut layers: Vec<Layer> = Vec::new();
    let mut next = Some(name.to_owned());
    while let Some(current) = next.take() {
        if layers.len() >= MAX_DEPTH {
            return Err(format!(
                "theme \"{name}\": inheritance chain longer than {MAX_DEPTH}"
            ));
        }
        let (user, label, text) = find(&current, user_dir, &seen, name)?;
        let layer = parse_layer(&label, &text, &mut warnings)?;
        seen.push((user, current));
        next.clone_from(&layer.inherits);
        layers.push(layer);
    }

    // Merge palettes root first, so children override.
    let mut palette: HashMap<&str, Color> = HashMap::new();
    for layer in layers.iter().rev() {
        for (k, c) in &layer.palette {
            palette.insert(k, *c);
        }
    }
    let mut styles = BTreeMap::new();
    for layer in layers.iter().rev() {
        for (slot, spec) in &layer.slots {
            let mut style = Style::default().add_modifier(spec.modifiers);
            if let Some(fg) = &spec.fg {
                style = style.fg(lookup(&palette, fg, &layer.label, slot)?);
            }
            if let Some(bg) = &spec.bg {
                style = style.bg(lookup(&palette, bg, &layer.label, slot)?);
            }
            styles.insert(*slot, style);
        }
    }
    Ok(Resolved { styles, warnings })
}

fn lookup(palette: &HashMap<&str, Color>, value: &str, label: &str, slot: &str) -> Result<Color, String> {
    if let Some(c) = palette.get(value) {
        return Ok(*c);
    }
    parse_color(value)
        .ok_or_else(|| format!("{label}: [ui] \"{slot}\": unknown palette name or bad color \"{value}\""))
}

/// `#rrggbb`, an ANSI color name, a 0–255 index or `reset`.
fn parse_color(s: &str) -> Option<Color> {
    if s.starts_with('#') && s.len() != 7 {
        return None;
    }
    Color::from_str(s).ok()
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Finds theme `name`: the user file unless it is already in the chain, else
/// the bundled one unless already in the chain. Returns (from user dir,
/// label, text).
fn find(
    name: &str,
    user_dir: Option<&Path>,
    seen: &[(bool, String)],
    root: &str,
) -> Result<(bool, String, String), String> {
    if !valid_name(name) {
        return Err(format!(
            "theme name \"{}\" is invalid (use letters, digits, '-' and '_')",
            name.escape_debug()
        ));
    }
    let in_chain = |user: bool| seen.iter().any(|(u, n)| *u == user && n == name);
    if let Some(dir) = user_dir {
        let path = dir.join(format!("{name}.toml"));
        if !in_chain(true) && path.is_file() {
            let label = path.display().to_string();
            let too_big = std::fs::metadata(&path).is_ok_and(|m| m.len() > MAX_FILE_BYTES);
            if too_big {
                return Err(format!("{label}: file larger than {MAX_FILE_BYTES} bytes"));
            }
            let text = std::fs::read_to_string(&path).map_err(|e| format!("{label}: {e}"))?;
            return Ok((true, label, text));
        }
    }
    if let Some((_, text)) = BUNDLED.iter().find(|(n, _)| *n == name)
        && !in_chain(false)
    {
        return Ok((false, format!("<bundled>/{name}.toml"), (*text).to_owned()));
    }
    if in_chain(true) || in_chain(false) {
        let mut chain: Vec<&str> = seen.iter().map(|(_, n)| n.as_str()).collect();
        chain.push(name);
        return Err(format!(
            "theme \"{root}\": inheritance cycle: {}",
            chain.join(" -> ")
        ));
    }
    let dir = user_dir.map_or_else(String::new, |d| format!(" or {}", d.display()));
    Err(format!(
        "unknown theme \"{name}\" (not bundled: {}{dir})",
        BUNDLED_NAMES.join(", ")
    ))
}

fn parse_layer(label: &str, text: &str, warnings: &mut Vec<String>) -> Result<Layer, String> {
    let table: toml::Table = toml::from_str(text).map_err(|e| format!("{label}: {e}"))?;
    let mut layer = Layer {
        label: label.to_owned(),
        inherits: None,
        palette: Vec::new(),
        slots: Vec::new(),
    };
    for (key, value) in &table {
        match key.as_str() {
            "inherits" => match value {
                toml::Value::String(s) => layer.inherits = Some(s.clone()),
                _ => return Err(format!("{label}: inherits must be a theme name")),
            },
            "description" => {}
            "palette" => {
                let t = value
                    .as_table()
                    .ok_or_else(|| format!("{label}: [palette] must be a table"))?;
                for (k, v) in t {
                    let color = v
                        .as_str()
                        .and_then(parse_color)
                        .ok_or_else(|| format!("{label}: [palette] \"{k}\": bad color {v}"))?;
                    layer.palette.push((k.clone(), color));
                }
            }
            "ui" => {
                let t = value
                    .as_table()
                    .ok_or_else(|| format!("{label}: [ui] must be a table"))?;
                for (k, v) in t {
                    let Some(slot) = SLOTS.iter().copied().find(|s| s == k) else {
                        warnings.push(format!("{label}: [ui] unknown slot \"{k}\" ignored"));
                        continue;
                    };
                    layer.slots.push((slot, parse_spec(label, slot, v)?));
                }
            }
            other => warnings.push(format!("{label}: unknown key \"{other}\" ignored")),
        }
    }
    Ok(layer)
}

fn parse_spec(label: &str, slot: &str, value: &toml::Value) -> Result<Spec, String> {
    let here = || format!("{label}: [ui] \"{slot}\"");
    match value {
        toml::Value::String(s) => Ok(Spec {
            fg: Some(s.clone()),
            bg: None,
            modifiers: Modifier::empty(),
        }),
        toml::Value::Table(t) => {
            let mut spec = Spec {
                fg: None,
                bg: None,
                modifiers: Modifier::empty(),
            };
            for (k, v) in t {
                match k.as_str() {
                    "fg" | "bg" => {
                        let s = v
                            .as_str()
                            .ok_or_else(|| format!("{}: {k} must be a string", here()))?;
                        if k == "fg" {
                            spec.fg = Some(s.to_owned());
                        } else {
                            spec.bg = Some(s.to_owned());
                        }
                    }
                    "modifiers" => {
                        let list = v
                            .as_array()
                            .ok_or_else(|| format!("{}: modifiers must be a list", here()))?;
                        for m in list {
                            let m = m.as_str().and_then(parse_modifier).ok_or_else(|| {
                                format!(
                                    "{}: unknown modifier {m} (bold, reversed, underlined, \
                                     italic, dim)",
                                    here()
                                )
                            })?;
                            spec.modifiers |= m;
                        }
                    }
                    other => {
                        return Err(format!(
                            "{}: unknown key \"{other}\" (expected fg, bg, modifiers; \
                             quote dotted slot names)",
                            here()
                        ));
                    }
                }
            }
            Ok(spec)
        }
        _ => Err(format!(
            "{}: expected a color name or {{ fg, bg, modifiers }}",
            here()
        )),
    }
}

fn parse_modifier(s: &str) -> Option<Modifier> {
    match s.to_ascii_lowercase().as_str() {
        "bold" => Some(Modifier::BOLD),
        "reversed" => Some(Modifier::REVERSED),
        "underlined" => Some(Modifier::UNDERLINED),
        "italic" => Some(Modifier::ITALIC),
        "dim" => Some(Modifier::DIM),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A scratch directory removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(files: &[(&str, &str)]) -> TempDir {
            static N: AtomicUsize = AtomicUsize::new(0);
            let dir = std::env::temp_dir().join(format!(
                "uibits-theme-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&dir).expect("create temp dir");
            for (name, text) in files {
                std::fs::write(dir.join(name), text).expect("write theme");
            }
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn load(name: &str, dir: Option<&TempDir>) -> Result<Theme, String> {
        Theme::load(name, dir.map(|d| d.0.as_path()))
    }

    #[test]
    fn bundled_list_matches_files() {
        let files: Vec<&str> = BUNDLED.iter().map(|(n, _)| *n).collect();
        assert_eq!(Theme::bundled(), files.as_slice());
    }

    #[test]
    fn every_bundled_theme_loads_cleanly() {
        for &name in Theme::bundled() {
            let resolved = match resolve(name, None) {
                Ok(r) => r,
                Err(e) => panic!("{name}: {e}"),
            };
            assert!(resolved.warnings.is_empty(), "{name}: {:?}", resolved.warnings);
            for slot in SLOTS {
                assert!(
                    resolved.styles.contains_key(slot),
                    "{name} neither defines nor inherits {slot}"
                );
            }
            let theme = load(name, None).expect("loads");
            assert!(theme.warnings().is_empty(), "{name}: {:?}", theme.warnings());
            assert_eq!(theme.name(), name);
        }
    }

    #[test]
    fn mono_has_no_colors_and_distinguishes_selection() {
        let mono = load("mono", None).expect("mono");
        for slot in SLOTS {
            let s = mono.style(slot);
            assert_eq!((s.fg, s.bg), (None, None), "mono {slot}");
        }
        assert!(
            mono.style("list.selected")
                .add_modifier
                .contains(Modifier::REVERSED)
        );
    }

    #[test]
    fn light_inherits_layout_with_own_colors() {
        let default = load("default", None).expect("default");
        let light = load("light", None).expect("light");
        let d = default.style("list.selected");
        let l = light.style("list.selected");
        assert_eq!(d.add_modifier, l.add_modifier);
        assert_eq!(l.bg, Some(Color::Rgb(0x00, 0x5f, 0x87)));
        assert_eq!(d.bg, Some(Color::Cyan));
        assert_eq!(default.style("status.ok").fg, Some(Color::Green));
    }

    #[test]
    fn style_values() {
        let t = load("default", None).expect("default");
        assert_eq!(
            t.style("ui.title"),
            Style::default().fg(Color::Cyan).add_modifier(Modifier::BOLD)
        );
        assert_eq!(t.style("no.such.slot"), Style::default());
    }

    #[test]
    fn user_theme_overrides_one_slot() {
        let dir = TempDir::new(&[(
            "mine.toml",
            "inherits = \"default\"\n[ui]\n\"status.ok\" = { fg = \"#102030\", modifiers = [\"underlined\"] }\n",
        )]);
        let mine = load("mine", Some(&dir)).expect("mine");
        let default = load("default", None).expect("default");
        assert!(mine.warnings().is_empty(), "{:?}", mine.warnings());
        assert_eq!(
            mine.style("status.ok"),
            Style::default()
                .fg(Color::Rgb(0x10, 0x20, 0x30))
                .add_modifier(Modifier::UNDERLINED)
        );
        for slot in SLOTS.iter().filter(|s| **s != "status.ok") {
            assert_eq!(mine.style(slot), default.style(slot), "{slot}");
        }
    }

    #[test]
    fn user_file_wins_and_may_inherit_the_bundled_one() {
        let dir = TempDir::new(&[(
            "default.toml",
            "inherits = \"default\"\n[palette]\naccent = \"magenta\"\n",
        )]);
        let t = load("default", Some(&dir)).expect("user default");
        assert!(t.warnings().is_empty(), "{:?}", t.warnings());
        assert_eq!(t.style("ui.title").fg, Some(Color::Magenta));
        assert_eq!(t.style("popup.border").fg, Some(Color::Magenta));
    }

    #[test]
    fn inherits_chain() {
        let dir = TempDir::new(&[
            ("a.toml", "inherits = \"b\"\n[ui]\n\"log.info\" = \"blue\"\n"),
            (
                "b.toml",
                "inherits = \"light\"\n[palette]\nwarn = \"#ff0000\"\n[ui]\n\"log.info\" = \"red\"\n\"log.error\" = \"yellow\"\n",
            ),
        ]);
        let a = load("a", Some(&dir)).expect("a");
        assert!(a.warnings().is_empty(), "{:?}", a.warnings());
        assert_eq!(a.style("log.info").fg, Some(Color::Blue)); // a
        assert_eq!(a.style("log.error").fg, Some(Color::Yellow)); // b
        assert_eq!(a.style("log.warn").fg, Some(Color::Rgb(255, 0, 0))); // default slot, b palette
        assert_eq!(a.style("ui.dim").fg, Some(Color::Rgb(0x6c, 0x6c, 0x6c))); // light
    }

    #[test]
    fn inherits_cycle_is_an_error() {
        let dir = TempDir::new(&[
            ("a.toml", "inherits = \"b\"\n"),
            ("b.toml", "inherits = \"c\"\n"),
            ("c.toml", "inherits = \"a\"\n"),
            ("self.toml", "inherits = \"self\"\n"),
        ]);
        let e = load("a", Some(&dir)).expect_err("cycle");
        assert!(e.contains("cycle") && e.contains("a -> b -> c -> a"), "{e}");
        let e = load("self", Some(&dir)).expect_err("cycle");
        assert!(e.contains("cycle"), "{e}");
    }

    #[test]
    fn missing_slots_fall_back_to_default_with_warning() {
        let dir = TempDir::new(&[("bare.toml", "[ui]\n\"ui.text\" = \"white\"\n")]);
        let t = load("bare", Some(&dir)).expect("bare");
        let default = load("default", None).expect("default");
        assert_eq!(t.style("ui.text").fg, Some(Color::White));
        assert_eq!(t.style("status.error"), default.style("status.error"));
        assert_eq!(t.warnings().len(), SLOTS.len() - 1);
        assert!(t.warnings().iter().any(|w| w.contains("\"status.error\"")));
    }

    #[test]
    fn bad_color_error_says_where() {
        let dir = TempDir::new(&[
            (
                "pal.toml",
                "inherits = \"default\"\n[palette]\naccent = \"#12345\"\n",
            ),
            (
                "slot.toml",
                "inherits = \"default\"\n[ui]\n\"call.held\" = { bg = \"nosuch\" }\n",
            ),
            ("modi.toml", "[ui]\n\"button\" = { modifiers = [\"blink\"] }\n"),
            ("dotted.toml", "[ui]\nui.text = \"red\"\n"),
        ]);
        let e = load("pal", Some(&dir)).expect_err("bad color");
        assert!(
            e.contains("pal.toml") && e.contains("accent") && e.contains("#12345"),
            "{e}"
        );
        let e = load("slot", Some(&dir)).expect_err("unknown name");
        assert!(
            e.contains("slot.toml") && e.contains("call.held") && e.contains("nosuch"),
            "{e}"
        );
        let e = load("modi", Some(&dir)).expect_err("bad modifier");
        assert!(
            e.contains("modi.toml") && e.contains("button") && e.contains("blink"),
            "{e}"
        );
        // Unquoted dotted slot names are an unknown slot "ui" → warning only.
        let t = load("dotted", Some(&dir)).expect("dotted");
        assert!(t.warnings().iter().any(|w| w.contains("unknown slot \"ui\"")));
    }

    #[test]
    fn unknown_and_invalid_names() {
        let e = load("nope", None).expect_err("unknown");
        assert!(e.contains("unknown theme \"nope\""), "{e}");
        let e = load("../etc/passwd", None).expect_err("invalid");
        assert!(e.contains("invalid"), "{e}");
        let dir = TempDir::new(&[("broken.toml", "[ui\n")]);
        let e = load("broken", Some(&dir)).expect_err("toml");
        assert!(e.contains("broken.toml"), "{e}");
    }

    #[test]
    fn monochrome_drops_colors_keeps_modifiers() {
        let t = load("default", None).expect("default").monochrome();
        for slot in SLOTS {
            let s = t.style(slot);
            assert_eq!((s.fg, s.bg), (None, None), "{slot}");
        }
        assert_eq!(t.style("ui.title"), Style::default().add_modifier(Modifier::BOLD));
        let sel = t.style("list.selected").add_modifier;
        assert!(sel.contains(Modifier::BOLD | Modifier::REVERSED));
        assert!(t.style("status.bar").add_modifier.contains(Modifier::REVERSED));
    }
}
