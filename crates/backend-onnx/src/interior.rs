//! The graph rewritten to compute each field's interior alone (`valid`
//! convolutions), for [`ComputeBackend::forward_interior`].
//!
//! The sparse engine hands a local law fields of a tile plus a halo of the
//! law's receptive radius `r` and keeps only the tile; the exported graph
//! pads every 3x3 convolution ("same" padding), so it computes the halo's
//! cells too (1.27x the tile's cells at 16 x 16, r = 1) and the engine
//! drops them. For a graph that is a chain of stride-1 convolutions with
//! "same" padding and elementwise activations, removing the padding makes
//! every convolution shrink the field by its own radius, and the output is
//! exactly the interior without the outermost `sum of pads` cells: the
//! cells whose inputs never reached the padding. Any other graph (a
//! residual addition, pooling, a transposed convolution, a U-Net) is left
//! as it is and the backend crops instead.
//!
//! [`rewrite`] only edits what it checked: the convolutions' `pads`, and the
//! declared height and width of the output and of intermediate values
//! (which no longer hold). The backend then checks the rewritten graph
//! against the original on a probe field before using it.
//!
//! [`ComputeBackend::forward_interior`]: engine_api::ComputeBackend::forward_interior

use onnx_protobuf::{attribute_proto::AttributeType, Message, ModelProto, NodeProto};

/// Operators that act on each value alone, so that they commute with
/// cropping the field: what may sit between the convolutions.
const ELEMENTWISE: &[&str] = &[
    "Elu",
    "Relu",
    "LeakyRelu",
    "Selu",
    "Celu",
    "Gelu",
    "Tanh",
    "Sigmoid",
    "HardSigmoid",
    "Softplus",
    "Softsign",
    "Identity",
    "Neg",
    "Abs",
];

/// A graph rewritten to return each field's interior.
#[derive(Debug, Clone)]
pub(crate) struct Rewritten {
    /// The rewritten graph's bytes.
    pub model: Vec<u8>,
    /// The rows and columns trimmed on every side: the sum of the removed
    /// pads along the chain.
    pub margin: usize,
}

/// Rewrites the ONNX model in `bytes` so that it returns each field's
/// interior, or says why this graph cannot be rewritten.
pub(crate) fn rewrite(bytes: &[u8]) -> Result<Rewritten, String> {
    let mut model = ModelProto::parse_from_bytes(bytes)
        .map_err(|e| format!("not a readable ONNX model: {e}"))?;
    let graph = model.graph.as_mut().ok_or("the model has no graph")?;
    let [input] = &graph.input[..] else {
        return Err(format!(
            "the graph has {} inputs, not one",
            graph.input.len()
        ));
    };
    let initializers: Vec<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
    // The chain: each node's one non-weight input is the previous node's
    // output, starting at the graph's input.
    let mut current = input.name.clone();
    let mut margin = 0;
    for node in &mut graph.node {
        let data: Vec<&String> = node
            .input
            .iter()
            .filter(|name| !name.is_empty() && !initializers.contains(&name.as_str()))
            .collect();
        if data.len() != 1 || *data[0] != current || node.output.len() != 1 {
            return Err(format!(
                "node `{}` ({}) is not a link of a single chain of operators",
                node.name, node.op_type
            ));
        }
        match node.op_type.as_str() {
            "Conv" if node.domain.is_empty() => margin += unpad(node)?,
            op if node.domain.is_empty() && ELEMENTWISE.contains(&op) => {}
            op => {
                return Err(format!(
                    "node `{}` is a {op}, neither a convolution nor elementwise",
                    node.name
                ))
            }
        }
        current = node.output[0].clone();
    }
    let [output] = &mut graph.output[..] else {
        return Err(format!(
            "the graph has {} outputs, not one",
            graph.output.len()
        ));
    };
    if output.name != current {
        return Err("the graph's output is not the chain's last value".into());
    }
    if margin == 0 {
        return Err("no convolution pads the field: the interior is the input cropped".into());
    }
    // The output's declared height and width equal the input's, which is no
    // longer true; intermediate shapes neither. ONNX Runtime infers them.
    if let Some(declared) = output.type_.as_mut().filter(|t| t.has_tensor_type()) {
        if let Some(shape) = declared.mut_tensor_type().shape.as_mut() {
            for dim in shape.dim.iter_mut().skip(2) {
                dim.value = None;
            }
        }
    }
    graph.value_info.clear();
    let model = model
        .write_to_bytes()
        .map_err(|e| format!("cannot write the rewritten model: {e}"))?;
    Ok(Rewritten { model, margin })
}

/// Sets a "same"-padded, stride-1 convolution's pads to 0 and returns the
/// pad it removed (its radius), or why it cannot.
fn unpad(node: &mut NodeProto) -> Result<usize, String> {
    let name = node.name.clone();
    let ints = |node: &NodeProto, key: &str| -> Option<Vec<i64>> {
        node.attribute
            .iter()
            .find(|a| a.name == key)
            .map(|a| a.ints.clone())
    };
    if let Some(auto) = node.attribute.iter().find(|a| a.name == "auto_pad") {
        if !auto.s.is_empty() && auto.s != b"NOTSET" {
            return Err(format!(
                "convolution `{name}` pads by auto_pad {}",
                String::from_utf8_lossy(&auto.s)
            ));
        }
    }
    let kernel = ints(node, "kernel_shape")
        .ok_or_else(|| format!("convolution `{name}` does not declare its kernel_shape"))?;
    let strides = ints(node, "strides").unwrap_or_default();
    let dilations = ints(node, "dilations").unwrap_or_default();
    let pads = ints(node, "pads").unwrap_or_default();
    if kernel.len() != 2 || strides.iter().any(|&s| s != 1) {
        return Err(format!(
            "convolution `{name}` is not a 2D stride-1 convolution"
        ));
    }
    let dilation = |axis: usize| dilations.get(axis).copied().unwrap_or(1);
    // "Same" padding: every side pads the kernel's reach from its centre.
    let reach: Vec<i64> = (0..2).map(|a| dilation(a) * (kernel[a] - 1) / 2).collect();
    let same = kernel.iter().all(|k| k % 2 == 1)
        && reach[0] == reach[1]
        && (pads.is_empty() && reach[0] == 0
            || pads.len() == 4 && pads.iter().all(|&p| p == reach[0]));
    if !same {
        return Err(format!(
            "convolution `{name}` (kernel {kernel:?}, pads {pads:?}) does not pad its reach on every side"
        ));
    }
    if let Some(attr) = node.attribute.iter_mut().find(|a| a.name == "pads") {
        if attr.type_.enum_value() != Ok(AttributeType::INTS) {
            return Err(format!(
                "convolution `{name}` has pads that are not integers"
            ));
        }
        attr.ints.iter_mut().for_each(|p| *p = 0);
    }
    Ok(reach[0] as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn golden(name: &str) -> Vec<u8> {
        let path = format!(
            "{}/../../tests/fixtures/golden/{name}/model.onnx",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn pads(model: &[u8]) -> Vec<Vec<i64>> {
        let model = ModelProto::parse_from_bytes(model).unwrap();
        model
            .graph
            .node
            .iter()
            .filter(|n| n.op_type == "Conv")
            .map(|n| {
                n.attribute
                    .iter()
                    .find(|a| a.name == "pads")
                    .unwrap()
                    .ints
                    .clone()
            })
            .collect()
    }

    #[test]
    fn a_chain_of_same_padded_convolutions_loses_its_pads() {
        let conv = rewrite(&golden("conv3x3_d4")).unwrap();
        assert_eq!(conv.margin, 1);
        assert_eq!(pads(&conv.model), vec![vec![0, 0, 0, 0]]);
        // deep_qca: a padded depthwise 3x3, then 1x1 convolutions and ELUs.
        let qca = rewrite(&golden("deep_qca_d2_h8")).unwrap();
        assert_eq!(qca.margin, 1);
        assert!(pads(&qca.model).iter().all(|p| p == &[0, 0, 0, 0]));
    }

    /// An attribute of integers.
    fn ints(name: &str, values: &[i64]) -> onnx_protobuf::AttributeProto {
        onnx_protobuf::AttributeProto {
            name: name.into(),
            type_: AttributeType::INTS.into(),
            ints: values.to_vec(),
            ..Default::default()
        }
    }

    /// A Conv node from `input` to `output` with weight `<output>.w`.
    fn conv(
        input: &str,
        output: &str,
        kernel: i64,
        pads: &[i64],
        stride: i64,
        dilation: i64,
    ) -> NodeProto {
        NodeProto {
            name: output.into(),
            op_type: "Conv".into(),
            input: vec![input.into(), format!("{output}.w")],
            output: vec![output.into()],
            attribute: vec![
                ints("kernel_shape", &[kernel, kernel]),
                ints("pads", pads),
                ints("strides", &[stride, stride]),
                ints("dilations", &[dilation, dilation]),
            ],
            ..Default::default()
        }
    }

    fn op(op_type: &str, inputs: &[&str], output: &str) -> NodeProto {
        NodeProto {
            name: output.into(),
            op_type: op_type.into(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.into()],
            ..Default::default()
        }
    }

    /// A model of `nodes` from graph input `x` to graph output `y`, every
    /// Conv's weight an initializer.
    fn model(nodes: Vec<NodeProto>) -> Vec<u8> {
        let value = |name: &str| onnx_protobuf::ValueInfoProto {
            name: name.into(),
            ..Default::default()
        };
        let initializer = nodes
            .iter()
            .filter(|n| n.op_type == "Conv")
            .map(|n| onnx_protobuf::TensorProto {
                name: format!("{}.w", n.output[0]),
                ..Default::default()
            })
            .collect();
        let graph = onnx_protobuf::GraphProto {
            node: nodes,
            input: vec![value("x")],
            output: vec![value("y")],
            initializer,
            ..Default::default()
        };
        ModelProto {
            graph: Some(graph).into(),
            ..Default::default()
        }
        .write_to_bytes()
        .unwrap()
    }

    #[test]
    fn the_margin_is_the_sum_of_the_kernels_reaches() {
        let chain = model(vec![
            conv("x", "a", 3, &[1, 1, 1, 1], 1, 1),
            op("Relu", &["a"], "b"),
            conv("b", "c", 5, &[2, 2, 2, 2], 1, 1),
            // Dilation 2 reaches 2 cells with a 3x3 kernel.
            conv("c", "y", 3, &[2, 2, 2, 2], 1, 2),
        ]);
        let rewritten = rewrite(&chain).unwrap();
        assert_eq!(rewritten.margin, 5);
        assert!(pads(&rewritten.model).iter().all(|p| p == &[0, 0, 0, 0]));
    }

    #[test]
    fn convolutions_that_do_not_pad_their_reach_are_refused() {
        let refused = |node: NodeProto, why: &str| {
            let err = rewrite(&model(vec![node])).unwrap_err();
            assert!(err.contains(why), "{err}");
        };
        refused(conv("x", "y", 3, &[1, 1, 1, 1], 2, 1), "stride-1");
        refused(
            conv("x", "y", 3, &[1, 0, 1, 0], 1, 1),
            "does not pad its reach",
        );
        refused(
            conv("x", "y", 3, &[2, 2, 2, 2], 1, 1),
            "does not pad its reach",
        );
        refused(
            conv("x", "y", 2, &[1, 1, 1, 1], 1, 1),
            "does not pad its reach",
        );
        let mut same = conv("x", "y", 3, &[], 1, 1);
        same.attribute.push(onnx_protobuf::AttributeProto {
            name: "auto_pad".into(),
            type_: AttributeType::STRING.into(),
            s: b"SAME_UPPER".to_vec(),
            ..Default::default()
        });
        refused(same, "auto_pad");
    }

    #[test]
    fn anything_but_a_single_chain_is_refused() {
        let refused = |nodes: Vec<NodeProto>, why: &str| {
            let err = rewrite(&model(nodes)).unwrap_err();
            assert!(err.contains(why), "{err}");
        };
        // A residual connection: the field and the convolution added.
        refused(
            vec![
                conv("x", "a", 3, &[1, 1, 1, 1], 1, 1),
                op("Add", &["x", "a"], "y"),
            ],
            "chain",
        );
        // A second branch from the graph input.
        refused(
            vec![
                conv("x", "a", 3, &[1, 1, 1, 1], 1, 1),
                op("Relu", &["x"], "y"),
            ],
            "chain",
        );
        // A weight computed by a node rather than stored.
        refused(
            vec![op("Constant", &[], "w"), op("Conv", &["x", "w"], "y")],
            "chain",
        );
        // A spatial operator between the convolutions.
        refused(
            vec![
                conv("x", "a", 3, &[1, 1, 1, 1], 1, 1),
                op("MaxPool", &["a"], "y"),
            ],
            "neither a convolution nor elementwise",
        );
    }

    #[test]
    fn graphs_without_a_padded_chain_are_left_alone() {
        let mlp = rewrite(&golden("mlp_d2_h8")).unwrap_err();
        assert!(mlp.contains("no convolution pads"), "{mlp}");
        let unet = rewrite(&golden("unet_d2_h8")).unwrap_err();
        assert!(
            unet.contains("neither a convolution nor elementwise") || unet.contains("chain"),
            "{unet}"
        );
        assert!(rewrite(b"not a model").is_err());
    }
}
