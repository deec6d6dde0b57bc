//! The onnx backend: placeholder until its issue lands.
