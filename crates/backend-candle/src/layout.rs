//! The tensors each architecture's PyTorch `state_dict` holds, by name and shape.

use engine_api::{Architecture, ModelSpec};

/// One expected tensor: its state_dict name and shape.
pub type Entry = (String, Vec<usize>);

/// The GroupNorm group count the reference U-Net uses for `channels`.
pub fn group_count(channels: usize) -> usize {
    let g = if channels > 8 { channels / 8 } else { 1 };
    if g == 0 || !channels.is_multiple_of(g) {
        1
    } else {
        g
    }
}

/// Every tensor `spec`'s architecture needs; an error message for `custom`.
pub fn expected(spec: &ModelSpec) -> Result<Vec<Entry>, String> {
    let c = spec.channels();
    let h = spec.hidden_channels.unwrap_or(0);
    let mut out = Vec::new();
    match spec.architecture {
        Architecture::Conv3x3 => {
            out.push(("conv.weight".into(), vec![c, c, 3, 3]));
            out.push(("conv.bias".into(), vec![c]));
        }
        Architecture::Mlp => mlp(&mut out, "net", c, h, c),
        Architecture::DeepQca => {
            out.push(("conv_neighbors.weight".into(), vec![8 * c, 1, 3, 3]));
            mlp(&mut out, "processing_net", 8 * c, h, c);
        }
        Architecture::Unet
        | Architecture::UnetUnitary
        | Architecture::UnetConvlstm
        | Architecture::UnetUnitaryRmsnorm => {
            let norm = if spec.architecture == Architecture::UnetUnitaryRmsnorm {
                Norm::Rms
            } else {
                Norm::Group
            };
            let block = |out: &mut Vec<Entry>, prefix: &str, i: usize, o: usize| {
                conv_block(out, prefix, i, o, norm)
            };
            block(&mut out, "inc", c, h);
            block(&mut out, "down1.1", h, 2 * h);
            block(&mut out, "down2.1", 2 * h, 4 * h);
            if spec.architecture == Architecture::UnetConvlstm {
                // The ConvLSTM's gates read cat(x3, h_state), 4h + 4h
                // channels, and give four 4h-channel gates.
                out.push(("conv_gates.weight".into(), vec![16 * h, 8 * h, 3, 3]));
                out.push(("conv_gates.bias".into(), vec![16 * h]));
            }
            block(&mut out, "bot", 4 * h, 8 * h);
            out.push(("up1.weight".into(), vec![8 * h, 4 * h, 2, 2]));
            out.push(("up1.bias".into(), vec![4 * h]));
            block(&mut out, "conv_up1", 6 * h, 4 * h);
            out.push(("up2.weight".into(), vec![4 * h, 2 * h, 2, 2]));
            out.push(("up2.bias".into(), vec![2 * h]));
            block(&mut out, "conv_up2", 3 * h, h);
            out.push(("outc.weight".into(), vec![c, h, 1, 1]));
            out.push(("outc.bias".into(), vec![c]));
        }
        Architecture::Custom => {
            return Err(format!(
                "model `{}` has architecture `custom`: custom models run on tch or onnx only (choose one of those backends)",
                spec.name
            ))
        }
        other => {
            return Err(format!(
                "model `{}` has architecture `{other}`, which the candle backend does not know",
                spec.name
            ))
        }
    }
    Ok(out)
}

/// The input channels the weights' first layer takes, if that tensor exists.
///
/// Reported separately from the generic shape list because "trained for a
/// different d_state" is the mistake users actually make.
pub fn input_channels(
    arch: Architecture,
    shape_of: impl Fn(&str) -> Option<Vec<usize>>,
) -> Option<usize> {
    let (name, dim, divisor) = match arch {
        Architecture::Conv3x3 => ("conv.weight", 1, 1),
        Architecture::Mlp => ("net.0.weight", 1, 1),
        Architecture::DeepQca => ("conv_neighbors.weight", 0, 8),
        Architecture::Unet
        | Architecture::UnetUnitary
        | Architecture::UnetConvlstm
        | Architecture::UnetUnitaryRmsnorm => ("inc.conv_block.0.weight", 1, 1),
        _ => return None,
    };
    let shape = shape_of(name)?;
    let n = *shape.get(dim)?;
    n.is_multiple_of(divisor).then_some(n / divisor)
}

/// `Sequential(Conv2d(i, h, 1), ELU, Conv2d(h, h, 1), ELU, Conv2d(h, o, 1))`.
fn mlp(out: &mut Vec<Entry>, prefix: &str, i: usize, h: usize, o: usize) {
    for (idx, (co, ci)) in [(0, (h, i)), (2, (h, h)), (4, (o, h))] {
        out.push((format!("{prefix}.{idx}.weight"), vec![co, ci, 1, 1]));
        out.push((format!("{prefix}.{idx}.bias"), vec![co]));
    }
}

/// The normalisation a U-Net's conv blocks use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Norm {
    /// `GroupNorm(group_count(o), o)`: a weight and a bias.
    Group,
    /// Atheria's `RMSNorm2d(o)`: a weight only.
    Rms,
}

/// The reference `ConvBlock(i, o)`: two bias-free 3x3 convs, each followed
/// by its norm (Sequential indices 1 and 4; the ELUs at 2 and 5 hold nothing).
fn conv_block(out: &mut Vec<Entry>, prefix: &str, i: usize, o: usize, norm: Norm) {
    for (conv, n, ci) in [(0, 1, i), (3, 4, o)] {
        out.push((
            format!("{prefix}.conv_block.{conv}.weight"),
            vec![o, ci, 3, 3],
        ));
        out.push((format!("{prefix}.conv_block.{n}.weight"), vec![o]));
        if norm == Norm::Group {
            out.push((format!("{prefix}.conv_block.{n}.bias"), vec![o]));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_counts_follow_the_reference_rule() {
        assert_eq!(group_count(4), 1);
        assert_eq!(group_count(8), 1);
        assert_eq!(group_count(12), 1);
        assert_eq!(group_count(16), 2);
        assert_eq!(group_count(20), 2);
        assert_eq!(group_count(24), 3);
        assert_eq!(group_count(64), 8);
    }

    /// Atheria's unet_convlstm.py writes its rule differently
    /// (`max(1, c // 8 if c > 8 else 1)`, then 1 unless it divides c): the
    /// same counts, so its GroupNorms need no rule of their own.
    #[test]
    fn convlstm_group_rule_is_the_same_rule() {
        for c in 1..=512 {
            let mut g = if c > 8 { (c / 8).max(1) } else { 1 };
            if c % g != 0 {
                g = 1;
            }
            assert_eq!(group_count(c), g, "channels {c}");
        }
    }

    fn spec(arch: Architecture) -> ModelSpec {
        let json = format!(
            r#"{{"format":"atheria-model/1","name":"t","architecture":"{arch}","d_state":2,
                "hidden_channels":8,"update":"additive","receptive_radius":null,
                "spatial_multiple":4,"files":{{"safetensors":"model.safetensors"}}{}}}"#,
            if arch == Architecture::UnetConvlstm {
                r#","memory":[{"name":"h_state","channels":32,"stride":4},{"name":"c_state","channels":32,"stride":4}]"#
            } else {
                ""
            }
        );
        ModelSpec::from_json(&json, std::path::Path::new("model.json")).expect("spec")
    }

    #[test]
    fn recurrent_and_rmsnorm_unets_list_their_own_tensors() {
        let names = |arch| -> Vec<Entry> { expected(&spec(arch)).expect("known architecture") };
        let unet = names(Architecture::Unet);
        let lstm = names(Architecture::UnetConvlstm);
        let rms = names(Architecture::UnetUnitaryRmsnorm);
        // The ConvLSTM U-Net is the U-Net plus the gates' conv, 8h -> 16h.
        assert_eq!(lstm.len(), unet.len() + 2);
        assert!(lstm.contains(&("conv_gates.weight".into(), vec![128, 64, 3, 3])));
        assert!(lstm.contains(&("conv_gates.bias".into(), vec![128])));
        assert!(unet.iter().all(|e| lstm.contains(e)));
        // RMSNorm has a weight and no bias: 6 blocks x 2 norms fewer tensors.
        assert_eq!(rms.len(), unet.len() - 12);
        assert!(rms.contains(&("bot.conv_block.4.weight".into(), vec![64])));
        assert!(!rms.iter().any(|(n, _)| n.ends_with("conv_block.1.bias")));
        assert!(rms.iter().all(|e| unet.contains(e)));
    }
}
