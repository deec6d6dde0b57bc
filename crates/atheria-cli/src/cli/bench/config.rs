//! The benchmark configurations and how a user picks among them.

use anyhow::Context;

/// Side of the square extent the sparse configurations cover, and of the
/// dense grid they are compared with.
pub const SPARSE_EXTENT: usize = 512;

/// The dense configuration every sparse figure is compared with.
pub const DENSE_REFERENCE: &str = "dense-512";

/// How the matter of a sparse configuration lies in its extent.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Matter {
    /// One disc centred in the extent covering this fraction of its cells;
    /// 1.0 means the whole extent (a disc cannot fill a square).
    Disc(f64),
    /// Cells drawn uniformly over the extent, this fraction of its cells.
    Scattered(f64),
}

/// Which engine a configuration steps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Engine {
    /// The dense engine on a `grid` x `grid` field, every cell matter.
    Dense,
    /// The sparse engine (tiles of 16) over a `grid` x `grid` extent.
    Sparse(Matter),
}

/// One benchmark configuration: a model and what it steps.
#[derive(Debug, Clone)]
pub struct Config {
    /// Name on the command line and in reports.
    pub name: String,
    /// The exporter's architecture name.
    pub arch: &'static str,
    /// Complex channels per cell.
    pub d_state: usize,
    /// Hidden channels, for architectures that have them.
    pub hidden: Option<usize>,
    /// Side of the grid (dense) or the extent (sparse).
    pub grid: usize,
    /// The engine and, for the sparse one, the matter.
    pub engine: Engine,
}

impl Config {
    /// Multiply-adds x 2 of one conv3x3 forward over `cells` cells.
    pub fn conv_flops(&self, cells: usize) -> f64 {
        2.0 * cells as f64 * (2 * self.d_state).pow(2) as f64 * 9.0
    }
}

/// Every configuration, in the order they run (the dense reference before
/// the sparse ones that are compared with it).
pub fn all() -> Vec<Config> {
    let conv = |name: String, grid, engine| Config {
        name,
        arch: "conv3x3",
        d_state: 64,
        hidden: None,
        grid,
        engine,
    };
    let sparse = |name: &str, matter| conv(name.to_string(), SPARSE_EXTENT, Engine::Sparse(matter));
    let mut v: Vec<Config> = [32, 64, 128, SPARSE_EXTENT]
        .into_iter()
        .map(|g| conv(format!("dense-{g}"), g, Engine::Dense))
        .collect();
    v.push(Config {
        name: "unet-128".into(),
        arch: "unet",
        d_state: 8,
        hidden: Some(32),
        grid: 128,
        engine: Engine::Dense,
    });
    v.push(sparse("sparse-disc-1", Matter::Disc(0.01)));
    v.push(sparse("sparse-disc-10", Matter::Disc(0.10)));
    v.push(sparse("sparse-full", Matter::Disc(1.0)));
    v.push(sparse("sparse-scatter-1", Matter::Scattered(0.01)));
    v
}

/// The configurations `names` asks for (all of them for `None`), in the
/// order of [`all`]; the dense reference is added when a sparse one needs it.
pub fn select(names: Option<&[String]>) -> anyhow::Result<Vec<Config>> {
    let all = all();
    let Some(names) = names else { return Ok(all) };
    for n in names {
        all.iter().find(|c| &c.name == n).with_context(|| {
            format!(
                "unknown configuration `{n}`: choose from {}",
                all.iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })?;
    }
    let wants_sparse = all
        .iter()
        .any(|c| names.contains(&c.name) && matches!(c.engine, Engine::Sparse(_)));
    Ok(all
        .into_iter()
        .filter(|c| names.contains(&c.name) || (wants_sparse && c.name == DENSE_REFERENCE))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sparse_choice_brings_its_dense_reference_first() {
        let chosen = select(Some(&["sparse-full".to_string()])).unwrap();
        let names: Vec<&str> = chosen.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, [DENSE_REFERENCE, "sparse-full"]);
        assert!(select(Some(&["dense-7".to_string()])).is_err());
        assert_eq!(select(None).unwrap().len(), all().len());
    }
}
