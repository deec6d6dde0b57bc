//! The embedded default law: a discretised Schroedinger equation on D = 4
//! coupled channels, built in code so that `atheria run` works with no files,
//! no Python and no download.
//!
//! It is a `conv3x3` model (so every backend path and both engines run it) with
//! zero bias (so vacuum stays vacuum and the sparse engine's equivalence holds):
//! delta = -i dt H psi, where H hops between the four nearest neighbours
//! (strength J), gives channel c the on-site energy E_c and couples adjacent
//! channels (strength K), plus a little diffusion (strength G) on the real and
//! imaginary parts so that the explicit Euler step damps the shortest waves
//! instead of amplifying them into a checkerboard. The engine's per-cell
//! normalisation makes the step nonlinear: from random phases (`--init random`,
//! the default) the field coarsens into phase domains around vortices, with
//! waves running in from the zero-padded border.

use engine_api::{Architecture, ModelFiles, ModelSpec, UpdateRule, MODEL_FORMAT};

/// Complex channels of the default law.
pub const D_STATE: usize = 4;
/// Time step.
const DT: f32 = 0.05;
/// Nearest-neighbour hopping.
const HOP: f32 = 1.0;
/// On-site energy of each channel.
const ENERGY: [f32; D_STATE] = [0.0, 0.7, 1.4, 2.1];
/// Coupling between adjacent channels.
const COUPLING: f32 = 0.4;
/// Diffusion; with DT and HOP it keeps every mode but the longest stable.
const DIFFUSION: f32 = 0.5;

/// Weights as (state_dict name, shape, values), the form backends load from memory.
pub type NamedTensors = Vec<(String, Vec<usize>, Vec<f32>)>;

/// The default law's description.
pub fn spec() -> ModelSpec {
    ModelSpec {
        format: MODEL_FORMAT.into(),
        name: "default-schroedinger-d4".into(),
        architecture: Architecture::Conv3x3,
        d_state: D_STATE,
        hidden_channels: None,
        update: UpdateRule::Additive,
        receptive_radius: Some(1),
        spatial_multiple: 1,
        files: ModelFiles::default(),
        memory: Vec::new(),
    }
}

/// The law's weights, named and shaped as PyTorch's `Conv2d` state_dict:
/// `conv.weight` `[2D, 2D, 3, 3]` and `conv.bias` `[2D]`.
pub fn tensors() -> NamedTensors {
    let d = D_STATE;
    let c2 = 2 * d;
    let mut w = vec![0.0f32; c2 * c2 * 9];
    // H as a 3x3 stencil between channel `to` and channel `from`.
    let h = |to: usize, from: usize, k: usize| -> f32 {
        let (ky, kx) = (k / 3, k % 3);
        let centre = ky == 1 && kx == 1;
        let neighbour = (ky == 1) != (kx == 1);
        if to == from {
            if centre {
                4.0 * HOP + ENERGY[to]
            } else if neighbour {
                -HOP
            } else {
                0.0
            }
        } else if centre && to.abs_diff(from) == 1 {
            COUPLING
        } else {
            0.0
        }
    };
    let at = |out: usize, inp: usize, k: usize| (out * c2 + inp) * 9 + k;
    for to in 0..d {
        for from in 0..d {
            for k in 0..9 {
                let v = DT * h(to, from, k);
                // -i dt H (a + ib) = dt H b - i dt H a
                w[at(to, d + from, k)] = v;
                w[at(d + to, from, k)] = -v;
            }
        }
        // G * laplacian, on the real and on the imaginary part of each channel.
        for k in 0..9 {
            let (ky, kx) = (k / 3, k % 3);
            let lap = match (ky == 1, kx == 1) {
                (true, true) => -4.0,
                (true, false) | (false, true) => 1.0,
                _ => 0.0,
            };
            for part in [to, d + to] {
                w[at(part, part, k)] += DT * DIFFUSION * lap;
            }
        }
    }
    vec![
        ("conv.weight".into(), vec![c2, c2, 3, 3], w),
        ("conv.bias".into(), vec![c2], vec![0.0; c2]),
    ]
}

/// Loads the default law on the candle backend.
#[cfg(feature = "candle")]
pub fn load(
    options: &engine_api::BackendOptions,
) -> engine_api::Result<std::sync::Arc<dyn engine_api::ComputeBackend>> {
    Ok(std::sync::Arc::new(
        backend_candle::CandleBackend::from_tensors(spec(), tensors(), options)?,
    ))
}

/// Loads the default law on the candle backend (not compiled into this binary).
#[cfg(not(feature = "candle"))]
pub fn load(
    _options: &engine_api::BackendOptions,
) -> engine_api::Result<std::sync::Arc<dyn engine_api::ComputeBackend>> {
    Err(engine_api::Error::BackendUnavailable {
        backend: "candle",
        message: "the embedded default law runs on candle; rebuild with the `candle` feature (`--features candle`), or load a model package instead".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spec_is_valid_and_the_weights_have_pytorch_shapes() {
        spec().validate().unwrap();
        let t = tensors();
        assert_eq!(t[0].1, vec![8, 8, 3, 3]);
        assert_eq!(t[0].2.len(), 8 * 8 * 9);
        assert!(
            t[1].2.iter().all(|&b| b == 0.0),
            "vacuum must map to a zero delta"
        );
    }
}
