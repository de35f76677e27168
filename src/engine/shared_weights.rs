//! One copy of a model's weights for every worker: the large initializers of each ONNX file,
//! read once and handed to each worker's session (ONNX Runtime's `AddInitializer`), which then
//! uses these buffers instead of loading its own copy.
//!
//! Only the fields of the ONNX protobuf that carry initializers are declared here (prost skips
//! the rest). Tensors stored outside the file (external data), in types other than
//! f32/i8/u8/i32/i64, or smaller than [`MIN_SHARED_BYTES`] are left to ONNX Runtime as usual.
//! Sessions that use shared weights must not pre-pack them (pre-packing makes a private copy per
//! session), so [`super::captioner`] turns pre-packing off for them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ort::value::{DynValue, Tensor};
use prost::Message;

use super::EngineError;

/// Initializers smaller than this stay private to each session: not worth sharing.
pub const MIN_SHARED_BYTES: usize = 1024;

/// `onnx.ModelProto`, only the graph.
#[derive(Clone, PartialEq, prost::Message)]
struct ModelProto {
    #[prost(message, optional, tag = "7")]
    graph: Option<GraphProto>,
}

/// `onnx.GraphProto`, only the initializers.
#[derive(Clone, PartialEq, prost::Message)]
struct GraphProto {
    #[prost(message, repeated, tag = "5")]
    initializer: Vec<TensorProto>,
}

/// `onnx.TensorProto`, the fields that hold an initializer's data in the file.
#[derive(Clone, PartialEq, prost::Message)]
struct TensorProto {
    #[prost(int64, repeated, tag = "1")]
    dims: Vec<i64>,
    #[prost(int32, tag = "2")]
    data_type: i32,
    #[prost(float, repeated, tag = "4")]
    float_data: Vec<f32>,
    #[prost(int64, repeated, tag = "7")]
    int64_data: Vec<i64>,
    #[prost(string, tag = "8")]
    name: String,
    #[prost(bytes = "bytes", tag = "9")]
    raw_data: bytes::Bytes,
    /// 1 = EXTERNAL: the data is in another file.
    #[prost(int32, tag = "14")]
    data_location: i32,
}

// onnx.TensorProto.DataType values.
const FLOAT: i32 = 1;
const UINT8: i32 = 2;
const INT8: i32 = 3;
const INT32: i32 = 6;
const INT64: i32 = 7;
const EXTERNAL: i32 = 1;

/// Named initializer values, ready to be added to a session.
pub type Initializers = Vec<(String, Arc<DynValue>)>;

/// The shared initializers of every ONNX file of one model, by file.
#[derive(Clone, Default)]
pub struct SharedWeights {
    by_file: HashMap<PathBuf, Arc<Initializers>>,
}

impl SharedWeights {
    /// Reads the large initializers of `files` (ONNX Runtime must be loaded first).
    pub fn read(files: &[&Path]) -> Result<Self, EngineError> {
        let mut by_file = HashMap::new();
        for file in files {
            by_file.insert(file.to_path_buf(), Arc::new(read_initializers(file)?));
        }
        Ok(Self { by_file })
    }

    /// The shared initializers of `file` (empty if it was not read).
    pub fn for_file(&self, file: &Path) -> &[(String, Arc<DynValue>)] {
        self.by_file.get(file).map_or(&[], |values| values.as_slice())
    }

    /// Bytes held, for logs.
    pub fn total_bytes(&self) -> usize {
        self.by_file.values().flat_map(|values| values.iter()).map(|(_, value)| value_bytes(value)).sum()
    }
}

fn value_bytes(value: &DynValue) -> usize {
    match value.dtype() {
        ort::value::ValueType::Tensor { ty, shape, .. } => {
            let count: i64 = shape.iter().product();
            usize::try_from(count).unwrap_or(0) * ty.byte_size(1).unwrap_or(0)
        }
        _ => 0,
    }
}

/// The initializers of one ONNX file worth sharing, as ONNX Runtime values.
fn read_initializers(file: &Path) -> Result<Initializers, EngineError> {
    let fail = |reason: String| EngineError::ModelLoad { path: file.display().to_string(), reason };
    let bytes = std::fs::read(file).map_err(|e| fail(e.to_string()))?;
    let model = ModelProto::decode(bytes::Bytes::from(bytes)).map_err(|e| fail(format!("not an ONNX model: {e}")))?;
    let mut shared = Vec::new();
    for tensor in model.graph.map(|g| g.initializer).unwrap_or_default() {
        if tensor.data_location == EXTERNAL {
            continue;
        }
        if let Some(value) = to_value(&tensor).map_err(|e| fail(format!("initializer `{}`: {e}", tensor.name)))? {
            shared.push((tensor.name, Arc::new(value)));
        }
    }
    Ok(shared)
}

/// The tensor as an ONNX Runtime value, or `None` when it is not worth or not able to be shared.
fn to_value(tensor: &TensorProto) -> Result<Option<DynValue>, ort::Error> {
    let shape: Vec<i64> = tensor.dims.clone();
    let raw = &tensor.raw_data;
    let value = match tensor.data_type {
        FLOAT if raw.len() >= MIN_SHARED_BYTES => {
            let data: Vec<f32> = raw.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
            Tensor::from_array((shape, data))?.into_dyn()
        }
        FLOAT if tensor.float_data.len() * 4 >= MIN_SHARED_BYTES => {
            Tensor::from_array((shape, tensor.float_data.clone()))?.into_dyn()
        }
        INT8 if raw.len() >= MIN_SHARED_BYTES => {
            let data: Vec<i8> = raw.iter().map(|b| i8::from_le_bytes([*b])).collect();
            Tensor::from_array((shape, data))?.into_dyn()
        }
        UINT8 if raw.len() >= MIN_SHARED_BYTES => Tensor::from_array((shape, raw.to_vec()))?.into_dyn(),
        INT32 if raw.len() >= MIN_SHARED_BYTES => {
            let data: Vec<i32> = raw.chunks_exact(4).map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
            Tensor::from_array((shape, data))?.into_dyn()
        }
        INT64 if raw.len() >= MIN_SHARED_BYTES => {
            let data: Vec<i64> = raw
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                .collect();
            Tensor::from_array((shape, data))?.into_dyn()
        }
        INT64 if tensor.int64_data.len() * 8 >= MIN_SHARED_BYTES => {
            Tensor::from_array((shape, tensor.int64_data.clone()))?.into_dyn()
        }
        _ => return Ok(None),
    };
    Ok(Some(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_raw_float_initializers_and_skips_small_and_external_ones() {
        let weights: Vec<f32> = (0..512).map(|i| i as f32 * 0.5).collect();
        let raw: Vec<u8> = weights.iter().flat_map(|w| w.to_le_bytes()).collect();
        let big = TensorProto {
            dims: vec![16, 32],
            data_type: FLOAT,
            name: "w".into(),
            raw_data: raw.clone().into(),
            ..Default::default()
        };
        let small = TensorProto {
            dims: vec![2],
            data_type: FLOAT,
            name: "b".into(),
            raw_data: raw[..8].to_vec().into(),
            ..Default::default()
        };
        let external = TensorProto { data_location: EXTERNAL, ..big.clone() };
        let model = ModelProto { graph: Some(GraphProto { initializer: vec![big, small, external] }) };
        let dir = std::env::temp_dir().join(format!("capwatch-shared-weights-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("model.onnx");
        std::fs::write(&file, model.encode_to_vec()).unwrap();
        if crate::engine::runtime::environment(None).is_err() {
            // No ONNX Runtime library here: the decoding itself is still checked.
            let decoded = ModelProto::decode(std::fs::read(&file).unwrap().as_slice()).unwrap();
            assert_eq!(decoded.graph.unwrap().initializer.len(), 3);
            return;
        }
        let shared = SharedWeights::read(&[file.as_path()]).unwrap();
        let values = shared.for_file(&file);
        assert_eq!(values.len(), 1, "only the large, in-file initializer is shared");
        assert_eq!(values[0].0, "w");
        let (shape, data) = values[0].1.try_extract_tensor::<f32>().unwrap();
        assert_eq!(&shape[..], &[16, 32]);
        assert_eq!(data, weights.as_slice());
        assert_eq!(shared.total_bytes(), 512 * 4);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
