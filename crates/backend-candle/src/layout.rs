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
        Architecture::Unet | Architecture::UnetUnitary => {
            conv_block(&mut out, "inc", c, h);
            conv_block(&mut out, "down1.1", h, 2 * h);
            conv_block(&mut out, "down2.1", 2 * h, 4 * h);
            conv_block(&mut out, "bot", 4 * h, 8 * h);
            out.push(("up1.weight".into(), vec![8 * h, 4 * h, 2, 2]));
            out.push(("up1.bias".into(), vec![4 * h]));
            conv_block(&mut out, "conv_up1", 6 * h, 4 * h);
            out.push(("up2.weight".into(), vec![4 * h, 2 * h, 2, 2]));
            out.push(("up2.bias".into(), vec![2 * h]));
            conv_block(&mut out, "conv_up2", 3 * h, h);
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
        Architecture::Unet | Architecture::UnetUnitary => ("inc.conv_block.0.weight", 1, 1),
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

/// The reference `ConvBlock(i, o)`: two bias-free 3x3 convs, each with GroupNorm.
fn conv_block(out: &mut Vec<Entry>, prefix: &str, i: usize, o: usize) {
    out.push((format!("{prefix}.conv_block.0.weight"), vec![o, i, 3, 3]));
    out.push((format!("{prefix}.conv_block.1.weight"), vec![o]));
    out.push((format!("{prefix}.conv_block.1.bias"), vec![o]));
    out.push((format!("{prefix}.conv_block.3.weight"), vec![o, o, 3, 3]));
    out.push((format!("{prefix}.conv_block.4.weight"), vec![o]));
    out.push((format!("{prefix}.conv_block.4.bias"), vec![o]));
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
}
