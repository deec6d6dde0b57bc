//! The one tool-string syntax, shared by the CLI, the Python module and the
//! viewer:
//!
//! ```text
//! name[:key=value[,key=value...]][@step=N]
//! ```
//!
//! `vortex:x=40,y=40,radius=6,strength=1@step=50` applies a vortex just
//! before step 50 is computed; without `@step` a tool applies before the
//! first step. Errors name the bad part.

use std::collections::BTreeMap;
use std::path::Path;

use engine_api::{Error, Result};
use sparse_grid::state_file::read_state;

use crate::tools::{EnergyMode, Tool};

/// A tool and the step before which it applies (`None`: before the first).
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduledTool {
    /// The tool.
    pub tool: Tool,
    /// Applied just before this step (from 1) is computed.
    pub step: Option<u64>,
}

/// The keys each tool accepts, in the order the docs give them.
const KEYS: &[(&str, &[&str])] = &[
    ("vortex", &["x", "y", "radius", "strength"]),
    ("wave", &["k_x", "k_y"]),
    ("collapse", &["x", "y", "intensity", "seed"]),
    ("click_out", &["enabled", "chance", "seed"]),
    ("inject_energy", &["mode", "x", "y", "seed"]),
    ("phase_vortex", &["x", "y", "charge", "core"]),
    ("stamp", &["x", "y", "file"]),
];

fn err(spec: &str, what: String) -> Error {
    Error::InvalidArgument(format!("tool `{spec}`: {what}"))
}

/// Parses one tool string. `stamp`'s `file` is read as a state file (at
/// most `max_cells` cells).
pub fn parse_tool(spec: &str, max_cells: usize) -> Result<ScheduledTool> {
    let (body, step) = match spec.split_once('@') {
        None => (spec, None),
        Some((body, at)) => {
            let n = at
                .strip_prefix("step=")
                .ok_or_else(|| err(spec, format!("`@{at}`: the only suffix is `@step=N`")))?;
            let n: u64 = n.parse().ok().filter(|&n| n >= 1).ok_or_else(|| {
                err(
                    spec,
                    format!("`@step={n}`: the step must be a whole number >= 1"),
                )
            })?;
            (body, Some(n))
        }
    };
    let (name, args) = body.split_once(':').unwrap_or((body, ""));
    let name = name.trim();
    let keys = KEYS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, k)| *k)
        .ok_or_else(|| {
            let names: Vec<&str> = KEYS.iter().map(|(n, _)| *n).collect();
            err(
                spec,
                format!("unknown tool `{name}`: use one of {}", names.join(", ")),
            )
        })?;
    let mut map = BTreeMap::new();
    for part in args.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| err(spec, format!("`{part}` is not key=value")))?;
        let k = k.trim();
        if !keys.contains(&k) {
            return Err(err(
                spec,
                format!(
                    "{name} has no argument `{k}` (it takes {})",
                    keys.join(", ")
                ),
            ));
        }
        if map.insert(k, v.trim()).is_some() {
            return Err(err(spec, format!("`{k}` is given twice")));
        }
    }
    let a = Args { spec, map };
    let tool = match name {
        "vortex" => Tool::Vortex {
            x: a.required("x")?,
            y: a.required("y")?,
            radius: a.or("radius", 5)?,
            strength: a.or("strength", 1.0)?,
        },
        "wave" => Tool::Wave {
            k_x: a.or("k_x", 1.0)?,
            k_y: a.or("k_y", 1.0)?,
        },
        "collapse" => Tool::Collapse {
            x: a.required("x")?,
            y: a.required("y")?,
            intensity: a.or("intensity", 0.5)?,
            seed: a.or("seed", 0)?,
        },
        "click_out" => Tool::ClickOut {
            enabled: a.or("enabled", true)?,
            chance: a.or("chance", 0.01)?,
            seed: a.or("seed", 0)?,
        },
        "inject_energy" => Tool::InjectEnergy {
            mode: a.required("mode")?,
            center: match (a.optional("x")?, a.optional("y")?) {
                (Some(x), Some(y)) => Some((x, y)),
                (None, None) => None,
                _ => {
                    return Err(err(
                        spec,
                        "give both x and y, or neither (the centre)".into(),
                    ))
                }
            },
            seed: a.or("seed", 0)?,
        },
        "phase_vortex" => Tool::PhaseVortex {
            x: a.required("x")?,
            y: a.required("y")?,
            charge: a.or("charge", 1)?,
            core: a.or("core", 2.0)?,
        },
        "stamp" => {
            let file: String = a.required("file")?;
            Tool::Stamp {
                x: a.required("x")?,
                y: a.required("y")?,
                patch: read_state(Path::new(&file), max_cells)
                    .map_err(|e| err(spec, format!("file: {e}")))?,
            }
        }
        _ => unreachable!("names come from KEYS"),
    };
    Ok(ScheduledTool { tool, step })
}

/// `"vortex:x=40,y=40,radius=6".parse::<Tool>()`: a tool string without
/// `@step` (a stamp's file is read with the default cell limit).
impl std::str::FromStr for Tool {
    type Err = Error;
    fn from_str(spec: &str) -> Result<Self> {
        let t = parse_tool(spec, sparse_grid::DEFAULT_MAX_CELLS)?;
        match t.step {
            None => Ok(t.tool),
            Some(_) => Err(err(
                spec,
                "`@step` belongs to a schedule (parse_tool), not to a tool".into(),
            )),
        }
    }
}

/// A value a tool string can hold.
trait Value: Sized {
    fn parse(s: &str) -> Option<Self>;
    const KIND: &'static str;
}

macro_rules! value {
    ($t:ty, $kind:literal) => {
        impl Value for $t {
            fn parse(s: &str) -> Option<Self> {
                s.parse().ok()
            }
            const KIND: &'static str = $kind;
        }
    };
}
value!(i32, "a whole number");
value!(u32, "a whole number >= 0");
value!(u64, "a whole number >= 0");
value!(f32, "a number");
value!(bool, "true or false");
value!(String, "a path");

impl Value for EnergyMode {
    fn parse(s: &str) -> Option<Self> {
        s.parse().ok()
    }
    const KIND: &'static str = "primordial_soup, dense_monolith or symmetric_seed";
}

struct Args<'a> {
    spec: &'a str,
    map: BTreeMap<&'a str, &'a str>,
}

impl Args<'_> {
    fn optional<T: Value>(&self, key: &str) -> Result<Option<T>> {
        self.map
            .get(key)
            .map(|v| {
                T::parse(v)
                    .ok_or_else(|| err(self.spec, format!("{key} = `{v}` is not {}", T::KIND)))
            })
            .transpose()
    }

    fn required<T: Value>(&self, key: &str) -> Result<T> {
        self.optional(key)?
            .ok_or_else(|| err(self.spec, format!("`{key}` is required")))
    }

    fn or<T: Value>(&self, key: &str, default: T) -> Result<T> {
        Ok(self.optional(key)?.unwrap_or(default))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<ScheduledTool> {
        parse_tool(s, 1 << 20)
    }

    fn message(s: &str) -> String {
        parse(s).expect_err(s).to_string()
    }

    #[test]
    fn a_full_tool_string() {
        let t = parse("vortex:x=40,y=41,radius=6,strength=0.5@step=50").unwrap();
        assert_eq!(t.step, Some(50));
        assert_eq!(
            t.tool,
            Tool::Vortex {
                x: 40,
                y: 41,
                radius: 6,
                strength: 0.5
            }
        );
    }

    #[test]
    fn a_tool_parses_from_its_string_without_a_step() {
        let t: Tool = "phase_vortex:x=3,y=4,charge=-2".parse().unwrap();
        assert_eq!(
            t,
            Tool::PhaseVortex {
                x: 3,
                y: 4,
                charge: -2,
                core: 2.0
            }
        );
        assert!("wave@step=3"
            .parse::<Tool>()
            .unwrap_err()
            .to_string()
            .contains("@step"));
    }

    #[test]
    fn defaults_are_atheria_s() {
        assert_eq!(
            parse("wave").unwrap().tool,
            Tool::Wave { k_x: 1.0, k_y: 1.0 }
        );
        assert_eq!(
            parse("collapse:x=1,y=2").unwrap().tool,
            Tool::Collapse {
                x: 1,
                y: 2,
                intensity: 0.5,
                seed: 0
            }
        );
        assert_eq!(
            parse("click_out").unwrap().tool,
            Tool::ClickOut {
                enabled: true,
                chance: 0.01,
                seed: 0
            }
        );
        assert_eq!(
            parse("inject_energy:mode=symmetric_seed").unwrap().tool,
            Tool::InjectEnergy {
                mode: EnergyMode::SymmetricSeed,
                center: None,
                seed: 0
            }
        );
    }

    #[test]
    fn errors_name_the_bad_part() {
        assert!(message("swirl:x=1").contains("unknown tool `swirl`"));
        assert!(message("vortex:x=1,y=2,size=3").contains("no argument `size`"));
        assert!(message("vortex:x=1,x=2,y=3").contains("`x` is given twice"));
        assert!(message("vortex:y=3").contains("`x` is required"));
        assert!(message("vortex:x=one,y=3").contains("x = `one` is not a whole number"));
        assert!(message("vortex:x=1,y=3@step=0").contains("@step=0"));
        assert!(message("vortex:x=1,y=3@when=4").contains("`@when=4`"));
        assert!(message("vortex:x=1,y").contains("`y` is not key=value"));
        assert!(message("inject_energy:mode=big_bang").contains("mode = `big_bang`"));
        assert!(message("inject_energy:mode=dense_monolith,x=3").contains("both x and y"));
        assert!(message("stamp:x=1,y=1,file=/nonexistent/patch.safetensors").contains("file:"));
    }
}
