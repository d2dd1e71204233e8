//! KServe Open Inference Protocol v2 (the "V2 inference protocol"), JSON
//! binding: model metadata, inference requests and responses, and errors.
//!
//! Tensor data travels as a flat row-major array of JSON numbers.

use serde::{Deserialize, Serialize};

/// The datatype names of the protocol that kokon serves.
pub mod datatype {
    /// 32-bit signed integer.
    pub const INT32: &str = "INT32";
    /// 64-bit signed integer.
    pub const INT64: &str = "INT64";
    /// 32-bit float.
    pub const FP32: &str = "FP32";
}

/// A tensor's name, datatype and shape (`-1` for a dynamic dimension).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TensorMetadata {
    /// Tensor name.
    pub name: String,
    /// Datatype, e.g. `INT32`.
    pub datatype: String,
    /// Shape; `-1` is any size.
    pub shape: Vec<i64>,
}

/// `GET /v2/models/{name}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelMetadata {
    /// Model name.
    pub name: String,
    /// Available versions (kokon serves one).
    pub versions: Vec<String>,
    /// Serving platform.
    pub platform: String,
    /// Inputs.
    pub inputs: Vec<TensorMetadata>,
    /// Outputs.
    pub outputs: Vec<TensorMetadata>,
    /// What a client needs besides the tensors to use the model (for
    /// Magika, `{"magika": {"config": ..., "content_types_kb": ...}}`: its
    /// pre- and post-processing configuration), measured into the enclave's
    /// serving configuration. Absent when the model needs none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<serde_json::Map<String, serde_json::Value>>,
}

/// One input tensor of a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InferInput {
    /// Tensor name.
    pub name: String,
    /// Shape.
    pub shape: Vec<i64>,
    /// Datatype.
    pub datatype: String,
    /// Row-major data.
    pub data: Vec<serde_json::Number>,
    /// Optional parameters (ignored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<serde_json::Value>,
}

/// A requested output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestedOutput {
    /// Output name.
    pub name: String,
}

/// `POST /v2/models/{name}/infer` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InferRequest {
    /// Request ID, echoed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Input tensors.
    pub inputs: Vec<InferInput>,
    /// Outputs wanted (all when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outputs: Option<Vec<RequestedOutput>>,
    /// Optional parameters (ignored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<serde_json::Value>,
}

/// One output tensor of a response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InferOutput {
    /// Tensor name.
    pub name: String,
    /// Shape.
    pub shape: Vec<i64>,
    /// Datatype.
    pub datatype: String,
    /// Row-major data.
    pub data: Vec<serde_json::Number>,
}

/// The inference response body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InferResponse {
    /// Model name.
    pub model_name: String,
    /// Request ID, echoed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Output tensors.
    pub outputs: Vec<InferOutput>,
}

/// An error body: `{"error": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: String,
}

impl InferInput {
    /// An INT32 input from integers.
    pub fn int32(name: &str, shape: Vec<i64>, data: &[i32]) -> Self {
        Self {
            name: name.into(),
            shape,
            datatype: datatype::INT32.into(),
            data: data.iter().map(|v| serde_json::Number::from(*v)).collect(),
            parameters: None,
        }
    }
}

impl InferOutput {
    /// The data as `f32`, failing on a non-number.
    pub fn f32_data(&self) -> Option<Vec<f32>> {
        self.data
            .iter()
            .map(|n| n.as_f64().map(|v| v as f32))
            .collect()
    }
}
