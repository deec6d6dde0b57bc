//! The benchmark's models on each backend: the exporter's package when
//! Python is set up, otherwise weights built in code for candle, so a fresh
//! clone benches every configuration with no Python at all.

use std::sync::Arc;

use anyhow::bail;
use atheria::{BackendKind, BackendOptions, ComputeBackend, ModelPackage};

use super::config::Config;

/// Loads a configuration's model on `kind`, from `package` when there is one.
pub fn load(
    kind: BackendKind,
    cfg: &Config,
    package: Option<&ModelPackage>,
    options: &BackendOptions,
) -> anyhow::Result<Arc<dyn ComputeBackend>> {
    match package {
        Some(p) => Ok(kind.load(p, options)?),
        #[cfg(feature = "candle")]
        None if kind == BackendKind::Candle => {
            let (spec, tensors) = in_code::weights(cfg)?;
            Ok(Arc::new(atheria::candle::CandleBackend::from_tensors(
                spec, tensors, options,
            )?))
        }
        None => bail!(
            "no model package for {} (run scripts/setup-python.sh so the exporter can make one)",
            cfg.name
        ),
    }
}

/// Weights built in code, as the exporter would make them.
#[cfg(feature = "candle")]
pub mod in_code {
    use anyhow::bail;
    use atheria::default_law::NamedTensors;
    use atheria::{Architecture, ModelSpec, UpdateRule};

    use super::Config;

    /// The spec and weights of a configuration's model.
    pub fn weights(cfg: &Config) -> anyhow::Result<(ModelSpec, NamedTensors)> {
        match (cfg.arch, cfg.hidden) {
            ("conv3x3", _) => Ok(identity_conv(cfg.d_state)),
            ("unet", Some(h)) => Ok(seeded_unet(cfg.d_state, h, 0)),
            _ => bail!(
                "{}: no in-code weights for {} (run scripts/setup-python.sh so the exporter can make them)",
                cfg.name,
                cfg.arch
            ),
        }
    }

    fn spec(name: String, arch: Architecture, d: usize, hidden: Option<usize>) -> ModelSpec {
        let mut spec = atheria::default_law::spec();
        let global = matches!(arch, Architecture::Unet);
        spec.name = name;
        spec.architecture = arch;
        spec.d_state = d;
        spec.hidden_channels = hidden;
        spec.update = UpdateRule::Additive;
        spec.receptive_radius = (!global).then_some(1);
        spec.spatial_multiple = if global { 4 } else { 1 };
        spec
    }

    /// The exporter's `--init identity` conv3x3: weight[c, c, 1, 1] = 1,
    /// bias 0, so psi' = 2 psi normalises back to psi and vacuum stays vacuum.
    pub fn identity_conv(d: usize) -> (ModelSpec, NamedTensors) {
        let c = 2 * d;
        let mut w = vec![0.0f32; c * c * 9];
        for i in 0..c {
            w[(i * c + i) * 9 + 4] = 1.0;
        }
        (
            spec(
                format!("identity-conv3x3-d{d}"),
                Architecture::Conv3x3,
                d,
                None,
            ),
            vec![
                ("conv.weight".into(), vec![c, c, 3, 3], w),
                ("conv.bias".into(), vec![c], vec![0.0; c]),
            ],
        )
    }

    /// The reference U-Net with seeded uniform weights (bound 1/sqrt(fan in),
    /// PyTorch's default scale) and GroupNorm at its initial 1 and 0. The
    /// values do not change the cost of a step; they only have to be sane.
    pub fn seeded_unet(d: usize, h: usize, seed: u64) -> (ModelSpec, NamedTensors) {
        let c = 2 * d;
        let mut rng = sparse_grid::rng::Rng::new(seed);
        let mut uniform = |n: usize, fan_in: usize| -> Vec<f32> {
            let bound = 1.0 / (fan_in as f32).sqrt();
            rng.uniform_vec(n, -bound, bound)
        };
        let mut t: NamedTensors = Vec::new();
        let mut block = |t: &mut NamedTensors, prefix: &str, i: usize, o: usize| {
            let p = |s: &str| format!("{prefix}.conv_block.{s}");
            t.push((p("0.weight"), vec![o, i, 3, 3], uniform(o * i * 9, i * 9)));
            t.push((p("1.weight"), vec![o], vec![1.0; o]));
            t.push((p("1.bias"), vec![o], vec![0.0; o]));
            t.push((p("3.weight"), vec![o, o, 3, 3], uniform(o * o * 9, o * 9)));
            t.push((p("4.weight"), vec![o], vec![1.0; o]));
            t.push((p("4.bias"), vec![o], vec![0.0; o]));
        };
        block(&mut t, "inc", c, h);
        block(&mut t, "down1.1", h, 2 * h);
        block(&mut t, "down2.1", 2 * h, 4 * h);
        block(&mut t, "bot", 4 * h, 8 * h);
        block(&mut t, "conv_up1", 6 * h, 4 * h);
        block(&mut t, "conv_up2", 3 * h, h);
        let mut more = |name: &str, shape: Vec<usize>, fan_in: usize| {
            let n = shape.iter().product();
            t.push((name.to_string(), shape, uniform(n, fan_in)));
        };
        more("up1.weight", vec![8 * h, 4 * h, 2, 2], 4 * h * 4);
        more("up1.bias", vec![4 * h], 4 * h * 4);
        more("up2.weight", vec![4 * h, 2 * h, 2, 2], 2 * h * 4);
        more("up2.bias", vec![2 * h], 2 * h * 4);
        more("outc.weight", vec![c, h, 1, 1], h);
        more("outc.bias", vec![c], h);
        (
            spec(
                format!("seeded-unet-d{d}-h{h}"),
                Architecture::Unet,
                d,
                Some(h),
            ),
            t,
        )
    }
}
