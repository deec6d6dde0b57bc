//! A minimal ONNX writer: just enough protobuf to build one-convolution test
//! graphs, so the checks on malformed models need no Python and no fixtures.

/// One protobuf message under construction.
#[derive(Default)]
struct Msg(Vec<u8>);

impl Msg {
    fn varint(&mut self, mut v: u64) {
        loop {
            let byte = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                self.0.push(byte);
                return;
            }
            self.0.push(byte | 0x80);
        }
    }
    fn key(&mut self, field: u32, wire: u8) {
        self.varint(((field as u64) << 3) | wire as u64);
    }
    fn int(mut self, field: u32, v: i64) -> Self {
        self.key(field, 0);
        self.varint(v as u64);
        self
    }
    fn bytes(mut self, field: u32, b: &[u8]) -> Self {
        self.key(field, 2);
        self.varint(b.len() as u64);
        self.0.extend_from_slice(b);
        self
    }
    fn str(self, field: u32, s: &str) -> Self {
        self.bytes(field, s.as_bytes())
    }
    fn msg(self, field: u32, m: Msg) -> Self {
        self.bytes(field, &m.0)
    }
}

/// A dimension of a graph input or output: fixed, or named (dynamic).
#[derive(Clone, Copy)]
pub enum Dim {
    Fixed(i64),
    Dynamic(&'static str),
}

fn value_info(name: &str, dims: [Dim; 4]) -> Msg {
    let mut shape = Msg::default();
    for d in dims {
        let dim = match d {
            Dim::Fixed(v) => Msg::default().int(1, v),
            Dim::Dynamic(p) => Msg::default().str(2, p),
        };
        shape = shape.msg(1, dim);
    }
    let tensor_type = Msg::default().int(1, 1).msg(2, shape); // elem_type FLOAT
    Msg::default()
        .str(1, name)
        .msg(2, Msg::default().msg(1, tensor_type))
}

fn tensor(name: &str, dims: &[i64], values: &[f32]) -> Msg {
    let mut t = Msg::default();
    for &d in dims {
        t = t.int(1, d);
    }
    let raw: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    t.int(2, 1).str(8, name).bytes(9, &raw)
}

fn ints_attribute(name: &str, values: &[i64]) -> Msg {
    let mut a = Msg::default().str(1, name);
    for &v in values {
        a = a.int(8, v);
    }
    a.int(20, 7) // AttributeProto.INTS
}

/// An ONNX model `delta = Conv(x, weight, bias)` with `k x k` kernels, same
/// padding and the given stride. `weight` is `[out, in, k, k]` row-major. `io_dims` gives the
/// declared input and output shapes (usually dynamic batch, height, width).
pub fn conv_model(
    in_channels: usize,
    out_channels: usize,
    k: usize,
    weight: &[f32],
    bias: &[f32],
    stride: i64,
    io_dims: ([Dim; 4], [Dim; 4]),
) -> Vec<u8> {
    assert_eq!(weight.len(), out_channels * in_channels * k * k);
    assert_eq!(bias.len(), out_channels);
    let p = (k / 2) as i64;
    let node = Msg::default()
        .str(1, "x")
        .str(1, "weight")
        .str(1, "bias")
        .str(2, "delta")
        .str(3, "conv")
        .str(4, "Conv")
        .msg(5, ints_attribute("pads", &[p, p, p, p]))
        .msg(5, ints_attribute("strides", &[stride, stride]));
    let (o, i, k) = (out_channels as i64, in_channels as i64, k as i64);
    let graph = Msg::default()
        .msg(1, node)
        .str(2, "test_conv")
        .msg(5, tensor("weight", &[o, i, k, k], weight))
        .msg(5, tensor("bias", &[o], bias))
        .msg(11, value_info("x", io_dims.0))
        .msg(12, value_info("delta", io_dims.1));
    let opset = Msg::default().str(1, "").int(2, 17);
    Msg::default()
        .int(1, 8) // ir_version
        .str(2, "atheria-tests")
        .msg(7, graph)
        .msg(8, opset)
        .0
}

/// Dynamic batch, height and width with `channels` fixed.
pub fn nchw(channels: usize) -> [Dim; 4] {
    [
        Dim::Dynamic("batch"),
        Dim::Fixed(channels as i64),
        Dim::Dynamic("height"),
        Dim::Dynamic("width"),
    ]
}

/// One node of [`graph_model`]: `(op_type, inputs, output)`.
pub type Node<'a> = (&'a str, &'a [&'a str], &'a str);

/// An ONNX model of element-wise `nodes` (each one output), with scalar-like
/// f32 initializers `(name, dims, values)` and the declared graph inputs and
/// outputs, in order. Enough for recurrent test graphs (several named inputs
/// and outputs) without Python.
pub fn graph_model(
    nodes: &[Node<'_>],
    initializers: &[(&str, &[i64], &[f32])],
    inputs: &[(&str, [Dim; 4])],
    outputs: &[(&str, [Dim; 4])],
) -> Vec<u8> {
    let mut graph = Msg::default();
    for (i, (op, ins, out)) in nodes.iter().enumerate() {
        let mut node = Msg::default();
        for name in *ins {
            node = node.str(1, name);
        }
        node = node.str(2, out).str(3, &format!("n{i}")).str(4, op);
        graph = graph.msg(1, node);
    }
    graph = graph.str(2, "test_graph");
    for (name, dims, values) in initializers {
        graph = graph.msg(5, tensor(name, dims, values));
    }
    for (name, dims) in inputs {
        graph = graph.msg(11, value_info(name, *dims));
    }
    for (name, dims) in outputs {
        graph = graph.msg(12, value_info(name, *dims));
    }
    let opset = Msg::default().str(1, "").int(2, 17);
    Msg::default()
        .int(1, 8) // ir_version
        .str(2, "atheria-tests")
        .msg(7, graph)
        .msg(8, opset)
        .0
}
