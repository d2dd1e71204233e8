//! KServe Open Inference Protocol v2 (the "V2 inference protocol"), HTTP/REST
//! binding: model metadata, inference requests and responses, and errors,
//! with the binary tensor data extension.
//!
//! A body is either one JSON object, whose tensors carry their elements as a
//! flat row-major array of JSON numbers (`"data": [...]`), or, with the
//! binary tensor data extension, a JSON header followed by raw tensor bytes.
//! Then the [`HEADER_LENGTH`] field (`Inference-Header-Content-Length`) gives
//! the header's length in bytes; each binary tensor's header object says
//! `"parameters": {"binary_data_size": N}` instead of `data`, and its N bytes
//! follow the header in the order the tensors are listed: row-major,
//! little-endian, no padding (BOOL one byte per element; BYTES elements each
//! a 4-byte little-endian length and that many bytes). A request asks for an
//! output in binary with `"parameters": {"binary_data": true}` on the
//! requested output, or for all outputs with `"binary_data_output": true` in
//! the request's parameters.
//!
//! [`InferRequest::decode`] and [`InferResponse::decode`] read a body of
//! untrusted bytes: every size is checked against the tensor's shape and
//! datatype, and against the bytes present, before anything is copied; each
//! refusal is a [`KserveError`] naming the tensor and the sizes expected and
//! found. The [`Serialize`] and [`Deserialize`] implementations are the
//! JSON-only form of the same messages.

use std::borrow::Cow;

use serde::de::Error as _;
use serde::ser::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Number, Value};

/// The field (an HTTP header; in kokon, a header of the sealed Binary HTTP
/// message) that gives the length of a body's JSON header when binary
/// tensor data follows it. Matched without regard to case.
pub const HEADER_LENGTH: &str = "inference-header-content-length";

/// The content type of a body that carries binary tensor data.
pub const BINARY_CONTENT_TYPE: &str = "application/octet-stream";

/// The content type of a JSON-only body.
pub const JSON_CONTENT_TYPE: &str = "application/json";

/// The tensor parameter that gives the size of its binary data.
pub const BINARY_DATA_SIZE: &str = "binary_data_size";

/// The requested-output parameter that asks for it in binary (`true`) or
/// as JSON (`false`).
pub const BINARY_DATA: &str = "binary_data";

/// The request parameter that asks for every output in binary unless the
/// output says otherwise.
pub const BINARY_DATA_OUTPUT: &str = "binary_data_output";

/// A body refused: what was wrong with it, naming the tensor and the sizes
/// expected and found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct KserveError(pub String);

fn fail<T>(message: String) -> Result<T, KserveError> {
    Err(KserveError(message))
}

/// The datatypes of the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Datatype {
    /// Boolean, one byte (0 or 1) in binary.
    Bool,
    /// 8-bit unsigned integer.
    Uint8,
    /// 16-bit unsigned integer.
    Uint16,
    /// 32-bit unsigned integer.
    Uint32,
    /// 64-bit unsigned integer.
    Uint64,
    /// 8-bit signed integer.
    Int8,
    /// 16-bit signed integer.
    Int16,
    /// 32-bit signed integer.
    Int32,
    /// 64-bit signed integer.
    Int64,
    /// 16-bit float.
    Fp16,
    /// 32-bit float.
    Fp32,
    /// 64-bit float.
    Fp64,
    /// Byte strings; in binary, each a 4-byte little-endian length and its bytes.
    Bytes,
}

impl Datatype {
    /// Every datatype.
    pub const ALL: [Datatype; 13] = [
        Self::Bool,
        Self::Uint8,
        Self::Uint16,
        Self::Uint32,
        Self::Uint64,
        Self::Int8,
        Self::Int16,
        Self::Int32,
        Self::Int64,
        Self::Fp16,
        Self::Fp32,
        Self::Fp64,
        Self::Bytes,
    ];

    /// Its name in the protocol, e.g. `FP32`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Bool => "BOOL",
            Self::Uint8 => "UINT8",
            Self::Uint16 => "UINT16",
            Self::Uint32 => "UINT32",
            Self::Uint64 => "UINT64",
            Self::Int8 => "INT8",
            Self::Int16 => "INT16",
            Self::Int32 => "INT32",
            Self::Int64 => "INT64",
            Self::Fp16 => "FP16",
            Self::Fp32 => "FP32",
            Self::Fp64 => "FP64",
            Self::Bytes => "BYTES",
        }
    }

    /// The datatype named `name` (exactly, as the protocol spells it).
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.name() == name)
    }

    /// The size of one element in binary; `None` for BYTES, whose elements
    /// each carry their length.
    pub fn size(self) -> Option<usize> {
        match self {
            Self::Bool | Self::Uint8 | Self::Int8 => Some(1),
            Self::Uint16 | Self::Int16 | Self::Fp16 => Some(2),
            Self::Uint32 | Self::Int32 | Self::Fp32 => Some(4),
            Self::Uint64 | Self::Int64 | Self::Fp64 => Some(8),
            Self::Bytes => None,
        }
    }

    fn unknown(name: &str, what: &str) -> KserveError {
        KserveError(format!(
            "{what}: unknown datatype {name:?}; the protocol's are {}",
            Self::ALL.map(Self::name).join(", ")
        ))
    }
}

impl std::fmt::Display for Datatype {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Datatype {
    type Err = KserveError;
    fn from_str(s: &str) -> Result<Self, KserveError> {
        Self::parse(s).ok_or_else(|| Self::unknown(s, "datatype"))
    }
}

/// The number of elements of a tensor of `shape`; every dimension must be
/// a size (not negative) and the product must fit in memory's addresses.
pub fn element_count(shape: &[i64]) -> Result<usize, String> {
    shape.iter().try_fold(1usize, |count, dim| {
        let dim = usize::try_from(*dim)
            .map_err(|_| format!("shape {shape:?}: dimension {dim} is not a size"))?;
        count
            .checked_mul(dim)
            .ok_or_else(|| format!("shape {shape:?} is too large"))
    })
}

/// How a tensor's elements travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// In the JSON `data` member.
    Json,
    /// In the binary section after the JSON header.
    Binary,
}

/// A tensor's elements as they travel.
#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    /// In the JSON `data` member: row-major numbers.
    Json(Vec<Number>),
    /// In the binary section (binary tensor data extension): row-major,
    /// little-endian bytes.
    Binary(Vec<u8>),
}

impl TensorData {
    /// How it travels.
    pub fn encoding(&self) -> Encoding {
        match self {
            Self::Json(_) => Encoding::Json,
            Self::Binary(_) => Encoding::Binary,
        }
    }
}

/// An element type with a JSON number form and a binary form.
pub trait Element: Copy + Sized {
    /// Its datatype.
    const DATATYPE: Datatype;
    /// Its little-endian bytes.
    fn write_le(self, out: &mut Vec<u8>);
    /// The element in `bytes` (exactly its size), little-endian.
    fn read_le(bytes: &[u8]) -> Option<Self>;
    /// The element a JSON number stands for, when it is one (in range).
    fn from_number(n: &Number) -> Option<Self>;
    /// Its JSON number (none for a non-finite float).
    fn to_number(self) -> Option<Number>;
}

/// `Element` for `$t` of datatype `$d`, its JSON numbers read by `$from`
/// and written by `$to`.
macro_rules! element {
    ($($t:ty => $d:ident, $from:expr, $to:expr;)*) => {$(
        impl Element for $t {
            const DATATYPE: Datatype = Datatype::$d;
            fn write_le(self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
            fn read_le(bytes: &[u8]) -> Option<Self> {
                bytes.try_into().ok().map(<$t>::from_le_bytes)
            }
            fn from_number(n: &Number) -> Option<Self> {
                $from(n)
            }
            fn to_number(self) -> Option<Number> {
                $to(self)
            }
        }
    )*};
}

/// The integer a JSON number is, when it is one in `T`'s range.
fn integer<T: TryFrom<i64> + TryFrom<u64>>(n: &Number) -> Option<T> {
    n.as_i64()
        .and_then(|v| T::try_from(v).ok())
        .or_else(|| n.as_u64().and_then(|v| T::try_from(v).ok()))
}

/// A finite float's JSON number.
fn float_number(v: f64) -> Option<Number> {
    Number::from_f64(v)
}

element! {
    u8 => Uint8, integer, |v: u8| Some(Number::from(v));
    u16 => Uint16, integer, |v: u16| Some(Number::from(v));
    u32 => Uint32, integer, |v: u32| Some(Number::from(v));
    u64 => Uint64, integer, |v: u64| Some(Number::from(v));
    i8 => Int8, integer, |v: i8| Some(Number::from(v));
    i16 => Int16, integer, |v: i16| Some(Number::from(v));
    i32 => Int32, integer, |v: i32| Some(Number::from(v));
    i64 => Int64, integer, |v: i64| Some(Number::from(v));
    // A finite number beyond a float type's range is not one of its values.
    f32 => Fp32, |n: &Number| n.as_f64().map(|v| v as f32).filter(|v| v.is_finite()),
        |v: f32| float_number(f64::from(v));
    f64 => Fp64, |n: &Number| n.as_f64().filter(|v| v.is_finite()), float_number;
}

/// Calls `$f::<T>($args)` for the element type `T` of datatype `$d`, or
/// evaluates `$none` for a datatype without a JSON number form.
macro_rules! with_element {
    ($d:expr, $f:ident($($args:expr),*), $none:expr) => {
        match $d {
            Datatype::Uint8 => $f::<u8>($($args),*),
            Datatype::Uint16 => $f::<u16>($($args),*),
            Datatype::Uint32 => $f::<u32>($($args),*),
            Datatype::Uint64 => $f::<u64>($($args),*),
            Datatype::Int8 => $f::<i8>($($args),*),
            Datatype::Int16 => $f::<i16>($($args),*),
            Datatype::Int32 => $f::<i32>($($args),*),
            Datatype::Int64 => $f::<i64>($($args),*),
            Datatype::Fp32 => $f::<f32>($($args),*),
            Datatype::Fp64 => $f::<f64>($($args),*),
            Datatype::Bool | Datatype::Fp16 | Datatype::Bytes => $none,
        }
    };
}

/// A named tensor: an input of a request or an output of a response.
#[derive(Debug, Clone, PartialEq)]
pub struct InferTensor {
    /// Tensor name.
    pub name: String,
    /// Shape.
    pub shape: Vec<i64>,
    /// Datatype.
    pub datatype: Datatype,
    /// Its elements, as JSON numbers or binary.
    pub data: TensorData,
    /// Its other parameters (the binary extension's `binary_data_size` is
    /// not among them: it is [`TensorData::Binary`]'s length).
    pub parameters: Option<Map<String, Value>>,
}

/// One input tensor of a request.
pub type InferInput = InferTensor;

/// One output tensor of a response.
pub type InferOutput = InferTensor;

impl InferTensor {
    /// A tensor of `values`, travelling as `encoding`.
    pub fn new<T: Element>(
        name: &str,
        shape: Vec<i64>,
        values: &[T],
        encoding: Encoding,
    ) -> Result<Self, KserveError> {
        let data = match encoding {
            Encoding::Json => TensorData::Json(
                values
                    .iter()
                    .enumerate()
                    .map(|(i, v)| {
                        v.to_number().ok_or_else(|| {
                            KserveError(format!(
                                "tensor {name:?}: element {i} has no JSON number form (not finite); send it in binary"
                            ))
                        })
                    })
                    .collect::<Result<_, _>>()?,
            ),
            Encoding::Binary => return Ok(Self::binary(name, shape, values)),
        };
        Ok(Self {
            name: name.into(),
            shape,
            datatype: T::DATATYPE,
            data,
            parameters: None,
        })
    }

    /// A tensor of `values` in binary (the binary tensor data extension):
    /// how the SDK's tensors travel unless asked otherwise.
    pub fn binary<T: Element>(name: &str, shape: Vec<i64>, values: &[T]) -> Self {
        let mut bytes =
            Vec::with_capacity(values.len().saturating_mul(T::DATATYPE.size().unwrap_or(0)));
        values.iter().for_each(|v| v.write_le(&mut bytes));
        Self {
            name: name.into(),
            shape,
            datatype: T::DATATYPE,
            data: TensorData::Binary(bytes),
            parameters: None,
        }
    }

    /// An INT32 tensor in binary (the binary tensor data extension);
    /// [`InferTensor::int32_json`] for JSON numbers.
    ///
    /// ```
    /// use kokon_wire::kserve::{Encoding, InferInput};
    ///
    /// let input = InferInput::int32("bytes", vec![1, 3], &[1, 2, 3]);
    /// assert_eq!(input.data.encoding(), Encoding::Binary);
    /// assert_eq!(input.values::<i32>().unwrap(), [1, 2, 3]);
    /// ```
    pub fn int32(name: &str, shape: Vec<i64>, data: &[i32]) -> Self {
        Self::binary(name, shape, data)
    }

    /// An INT32 tensor as JSON numbers in the `data` member, for a server
    /// that does not take the binary tensor data extension.
    pub fn int32_json(name: &str, shape: Vec<i64>, data: &[i32]) -> Self {
        Self {
            name: name.into(),
            shape,
            datatype: Datatype::Int32,
            data: TensorData::Json(data.iter().map(|v| Number::from(*v)).collect()),
            parameters: None,
        }
    }

    /// An FP32 tensor in binary (the binary tensor data extension), its
    /// elements exact (non-finite ones included); [`InferTensor::new`] with
    /// [`Encoding::Json`] for JSON numbers.
    pub fn fp32(name: &str, shape: Vec<i64>, data: &[f32]) -> Self {
        Self::binary(name, shape, data)
    }

    /// Its elements as `T`, which must be its datatype's type; fails on a
    /// JSON number that is not a `T` or on binary data that is not a whole
    /// number of elements.
    pub fn values<T: Element>(&self) -> Result<Vec<T>, KserveError> {
        let name = &self.name;
        if self.datatype != T::DATATYPE {
            return fail(format!(
                "tensor {name:?} is {}, not {}",
                self.datatype,
                T::DATATYPE
            ));
        }
        match &self.data {
            TensorData::Json(numbers) => numbers
                .iter()
                .enumerate()
                .map(|(i, n)| {
                    T::from_number(n).ok_or_else(|| {
                        KserveError(format!(
                            "tensor {name:?}: element {i} ({n}) is not a valid {}",
                            T::DATATYPE
                        ))
                    })
                })
                .collect(),
            TensorData::Binary(bytes) => {
                let size = T::DATATYPE.size().unwrap_or(1);
                if bytes.len() % size != 0 {
                    return fail(format!(
                        "tensor {name:?}: {} bytes of binary data are not a whole number of {}-byte {} elements",
                        bytes.len(),
                        size,
                        T::DATATYPE
                    ));
                }
                bytes
                    .chunks_exact(size)
                    .map(|c| {
                        T::read_le(c).ok_or_else(|| {
                            KserveError(format!("tensor {name:?}: a binary element is cut short"))
                        })
                    })
                    .collect()
            }
        }
    }

    /// The elements as `f32`, when it is an FP32 tensor.
    pub fn f32_data(&self) -> Option<Vec<f32>> {
        self.values::<f32>().ok()
    }

    /// The same tensor travelling as `encoding`: JSON numbers become their
    /// little-endian bytes, binary elements their JSON numbers. Fails for
    /// BOOL, FP16 and BYTES tensors (no JSON number form here) and on
    /// elements out of the datatype's range or not finite.
    pub fn into_encoding(self, encoding: Encoding) -> Result<Self, KserveError> {
        if self.data.encoding() == encoding {
            return Ok(self);
        }
        fn convert<T: Element>(t: &InferTensor, to: Encoding) -> Result<TensorData, KserveError> {
            let values = t.values::<T>()?;
            Ok(InferTensor::new(&t.name, Vec::new(), &values, to)?.data)
        }
        let data = with_element!(
            self.datatype,
            convert(&self, encoding),
            fail(format!(
                "tensor {:?}: {} tensors have no JSON number form here; send them in binary",
                self.name, self.datatype
            ))
        )?;
        Ok(Self { data, ..self })
    }

    /// Checks that binary data is as long as the shape and datatype need
    /// (`role` names the tensor's kind in the message: input or output).
    /// JSON data is counted where the tensor is used.
    pub fn check_binary_size(&self, role: &str) -> Result<(), KserveError> {
        let TensorData::Binary(bytes) = &self.data else {
            return Ok(());
        };
        let what = format!("{role} {:?}", self.name);
        let count = check_declared_size(&what, bytes.len(), &self.shape, self.datatype)?;
        match self.datatype {
            Datatype::Bytes => check_bytes_elements(bytes, count).map_err(|e| {
                KserveError(format!(
                    "{what}: BYTES tensor of shape {:?}: {e}",
                    self.shape
                ))
            }),
            _ => Ok(()),
        }
    }
}

/// Checks that `size` bytes are what a binary tensor (`what`) of `shape`
/// and `datatype` takes, when its elements have a fixed size (BYTES
/// elements carry their own); returns its number of elements.
fn check_declared_size(
    what: &str,
    size: usize,
    shape: &[i64],
    datatype: Datatype,
) -> Result<usize, KserveError> {
    let count = element_count(shape).map_err(|e| KserveError(format!("{what}: {e}")))?;
    if let Some(element) = datatype.size() {
        let expected = count
            .checked_mul(element)
            .ok_or_else(|| KserveError(format!("{what}: shape {shape:?} is too large")))?;
        if size != expected {
            return fail(format!(
                "{what}: {BINARY_DATA_SIZE} is {size} bytes, but shape {shape:?} of {datatype} needs {expected} ({count} elements of {element} bytes)"
            ));
        }
    }
    Ok(count)
}

/// Checks that `bytes` holds exactly `count` length-prefixed elements.
fn check_bytes_elements(bytes: &[u8], count: usize) -> Result<(), String> {
    let mut rest = bytes;
    for i in 0..count {
        let (prefix, after) = rest.split_first_chunk::<4>().ok_or_else(|| {
            format!(
                "element {i} of {count}: the data ends before its 4-byte length ({} bytes left)",
                rest.len()
            )
        })?;
        let len = u32::from_le_bytes(*prefix) as usize;
        rest = after.get(len..).ok_or_else(|| {
            format!(
                "element {i} of {count}: its length {len} runs past the data ({} bytes left)",
                after.len()
            )
        })?;
    }
    if !rest.is_empty() {
        return Err(format!("{} bytes follow its {count} elements", rest.len()));
    }
    Ok(())
}

/// A requested output.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RequestedOutput {
    /// Output name.
    pub name: String,
    /// `binary_data`: in binary (`true`) or JSON (`false`); when absent, as
    /// the request's [`InferRequest::binary_output`] says.
    pub binary: Option<bool>,
    /// Its other parameters.
    pub parameters: Option<Map<String, Value>>,
}

/// `POST /v2/models/{name}/infer`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct InferRequest {
    /// Request ID, echoed.
    pub id: Option<String>,
    /// Input tensors.
    pub inputs: Vec<InferInput>,
    /// Outputs wanted (all when absent).
    pub outputs: Option<Vec<RequestedOutput>>,
    /// `binary_data_output`: every output in binary unless it says otherwise.
    pub binary_output: bool,
    /// Other parameters (ignored).
    pub parameters: Option<Map<String, Value>>,
}

/// The inference response.
#[derive(Debug, Clone, PartialEq)]
pub struct InferResponse {
    /// Model name.
    pub model_name: String,
    /// Request ID, echoed.
    pub id: Option<String>,
    /// Output tensors.
    pub outputs: Vec<InferOutput>,
}

/// An encoded body: JSON alone, or a JSON header and binary tensor data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    /// The body.
    pub body: Vec<u8>,
    /// The JSON header's length ([`HEADER_LENGTH`]), when binary data follows it.
    pub header_length: Option<usize>,
}

impl Encoded {
    /// Its content type.
    pub fn content_type(&self) -> &'static str {
        match self.header_length {
            Some(_) => BINARY_CONTENT_TYPE,
            None => JSON_CONTENT_TYPE,
        }
    }
}

/// The JSON header's length given by the [`HEADER_LENGTH`] field among
/// `fields` (name, value; the name matched without regard to case), or
/// `None` without one.
pub fn header_length<'a>(
    fields: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
) -> Result<Option<usize>, KserveError> {
    let Some((_, value)) = fields
        .into_iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(HEADER_LENGTH.as_bytes()))
    else {
        return Ok(None);
    };
    std::str::from_utf8(value)
        .ok()
        .map(str::trim)
        .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|v| v.parse::<usize>().ok())
        .map(Some)
        .ok_or_else(|| {
            KserveError(format!(
                "{HEADER_LENGTH} {:?} is not a byte count",
                String::from_utf8_lossy(value)
            ))
        })
}

/// A tensor's JSON object, in either direction.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TensorHeader<'a> {
    name: Cow<'a, str>,
    shape: Cow<'a, [i64]>,
    datatype: Cow<'a, str>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    data: Option<Cow<'a, [Number]>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    parameters: Option<Map<String, Value>>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct OutputHeader<'a> {
    name: Cow<'a, str>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    parameters: Option<Map<String, Value>>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestHeader<'a> {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id: Option<Cow<'a, str>>,
    inputs: Vec<TensorHeader<'a>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    outputs: Option<Vec<OutputHeader<'a>>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    parameters: Option<Map<String, Value>>,
}

#[derive(Serialize, Deserialize)]
struct ResponseHeader<'a> {
    model_name: Cow<'a, str>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id: Option<Cow<'a, str>>,
    outputs: Vec<TensorHeader<'a>>,
}

/// `parameters` with `extra` added, `None` when empty.
fn with_parameter(
    parameters: &Option<Map<String, Value>>,
    extra: Option<(&str, Value)>,
) -> Option<Map<String, Value>> {
    let mut map = parameters.clone().unwrap_or_default();
    if let Some((key, value)) = extra {
        map.insert(key.into(), value);
    }
    (!map.is_empty()).then_some(map)
}

/// Takes the parameter `key` out of `parameters` (`None` when none are left).
fn take(parameters: &mut Option<Map<String, Value>>, key: &str) -> Option<Value> {
    let value = parameters.as_mut().and_then(|p| p.remove(key));
    if parameters.as_ref().is_some_and(Map::is_empty) {
        *parameters = None;
    }
    value
}

/// Takes the boolean parameter `key` out of `parameters`.
fn take_bool(
    parameters: &mut Option<Map<String, Value>>,
    key: &str,
    what: &str,
) -> Result<Option<bool>, KserveError> {
    match take(parameters, key) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(b)),
        Some(other) => fail(format!(
            "{what}: {key} must be true or false, found {other}"
        )),
    }
}

/// The headers of `tensors` for JSON, their binary data appended to `binary`.
fn tensor_headers<'a>(tensors: &'a [InferTensor], binary: &mut Vec<u8>) -> Vec<TensorHeader<'a>> {
    tensors
        .iter()
        .map(|t| {
            let (data, size) = match &t.data {
                TensorData::Json(numbers) => (Some(Cow::Borrowed(numbers.as_slice())), None),
                TensorData::Binary(bytes) => {
                    binary.extend_from_slice(bytes);
                    (None, Some((BINARY_DATA_SIZE, Value::from(bytes.len()))))
                }
            };
            TensorHeader {
                name: Cow::Borrowed(&t.name),
                shape: Cow::Borrowed(&t.shape),
                datatype: Cow::Borrowed(t.datatype.name()),
                data,
                parameters: with_parameter(&t.parameters, size),
            }
        })
        .collect()
}

/// The tensors of `headers`, their binary data taken in turn from `binary`
/// (`None`: the body has no binary section), which they must use up.
fn tensors(
    headers: Vec<TensorHeader<'_>>,
    binary: Option<&[u8]>,
    role: &str,
) -> Result<Vec<InferTensor>, KserveError> {
    let mut rest = binary.unwrap_or_default();
    let mut out = Vec::with_capacity(headers.len());
    for header in headers {
        let name = header.name.into_owned();
        let what = format!("{role} {name:?}");
        let datatype = Datatype::parse(&header.datatype)
            .ok_or_else(|| Datatype::unknown(&header.datatype, &what))?;
        let mut parameters = header.parameters;
        let size = take(&mut parameters, BINARY_DATA_SIZE);
        let data = match (header.data, size) {
            (Some(_), Some(_)) => {
                return fail(format!(
                    "{what} has both data and {BINARY_DATA_SIZE}: give one"
                ))
            }
            (None, None) => return fail(format!("{what} has neither data nor {BINARY_DATA_SIZE}")),
            (Some(numbers), None) => TensorData::Json(numbers.into_owned()),
            (None, Some(size)) => {
                let size = size
                    .as_u64()
                    .and_then(|s| usize::try_from(s).ok())
                    .ok_or_else(|| {
                        KserveError(format!(
                            "{what}: {BINARY_DATA_SIZE} {size} is not a byte count"
                        ))
                    })?;
                if binary.is_none() {
                    return fail(format!(
                        "{what} has {BINARY_DATA_SIZE} {size}, but the body has no binary section (no {HEADER_LENGTH} field)"
                    ));
                }
                check_declared_size(&what, size, &header.shape, datatype)?;
                let (bytes, after) = rest.split_at_checked(size).ok_or_else(|| {
                    KserveError(format!(
                        "{what}: {BINARY_DATA_SIZE} is {size} bytes, but only {} bytes of binary data remain: the body is cut short",
                        rest.len()
                    ))
                })?;
                rest = after;
                TensorData::Binary(bytes.to_vec())
            }
        };
        let tensor = InferTensor {
            name,
            shape: header.shape.into_owned(),
            datatype,
            data,
            parameters,
        };
        tensor.check_binary_size(role)?;
        out.push(tensor);
    }
    if !rest.is_empty() {
        let total = binary.map(<[u8]>::len).unwrap_or(0);
        return fail(format!(
            "{} bytes of binary data follow the last binary tensor: the {role}s' {BINARY_DATA_SIZE} add up to {}, the body's binary section holds {total}",
            rest.len(),
            total - rest.len()
        ));
    }
    Ok(out)
}

/// Splits a body into its JSON header and binary section (`None` when
/// `header_length` is).
fn split(body: &[u8], header_length: Option<usize>) -> Result<(&[u8], Option<&[u8]>), KserveError> {
    match header_length {
        None => Ok((body, None)),
        Some(n) => body
            .split_at_checked(n)
            .map(|(header, binary)| (header, Some(binary)))
            .ok_or_else(|| {
                KserveError(format!(
                    "{HEADER_LENGTH} is {n}, but the body has only {} bytes",
                    body.len()
                ))
            }),
    }
}

/// The JSON header followed by `binary`, and its length when `binary` is.
fn join(header: &impl Serialize, binary: Option<Vec<u8>>) -> Result<Encoded, KserveError> {
    let mut body = serde_json::to_vec(header).map_err(|e| KserveError(e.to_string()))?;
    let header_length = binary.as_ref().map(|_| body.len());
    if let Some(binary) = binary {
        body.extend_from_slice(&binary);
    }
    Ok(Encoded {
        body,
        header_length,
    })
}

/// What requests and responses share: a JSON header, then the binary data
/// of the tensors it lists, in order.
trait Body: Sized {
    /// The JSON header.
    type Header<'a>: Serialize + Deserialize<'a>
    where
        Self: 'a;
    /// `request` or `response`, for messages.
    const KIND: &'static str;

    /// The message of `header`, its binary tensors' data taken from
    /// `binary` (`None`: the body has no binary section).
    fn from_header(header: Self::Header<'_>, binary: Option<&[u8]>) -> Result<Self, KserveError>;

    /// Its JSON header, its binary tensors' data appended to `binary`.
    fn header<'a>(&'a self, binary: &mut Vec<u8>) -> Self::Header<'a>;

    /// Its tensors.
    fn tensors(&self) -> &[InferTensor];

    /// Its first tensor in binary.
    fn first_binary(&self) -> Option<&InferTensor> {
        self.tensors()
            .iter()
            .find(|t| t.data.encoding() == Encoding::Binary)
    }

    fn decode_body(body: &[u8], header_length: Option<usize>) -> Result<Self, KserveError> {
        let (json, binary) = split(body, header_length)?;
        let header = serde_json::from_slice(json)
            .map_err(|e| KserveError(format!("malformed inference {} JSON: {e}", Self::KIND)))?;
        Self::from_header(header, binary)
    }

    fn encode_body(&self) -> Result<Encoded, KserveError> {
        let mut binary = Vec::new();
        let header = self.header(&mut binary);
        join(&header, self.first_binary().map(|_| binary))
    }
}

impl Body for InferRequest {
    type Header<'a> = RequestHeader<'a>;
    const KIND: &'static str = "request";

    fn from_header(header: RequestHeader<'_>, binary: Option<&[u8]>) -> Result<Self, KserveError> {
        let mut parameters = header.parameters;
        let binary_output =
            take_bool(&mut parameters, BINARY_DATA_OUTPUT, "the request")?.unwrap_or(false);
        let outputs = header
            .outputs
            .map(|list| {
                list.into_iter()
                    .map(|o| {
                        let mut parameters = o.parameters;
                        let what = format!("requested output {:?}", o.name);
                        Ok(RequestedOutput {
                            binary: take_bool(&mut parameters, BINARY_DATA, &what)?,
                            name: o.name.into_owned(),
                            parameters,
                        })
                    })
                    .collect::<Result<Vec<_>, KserveError>>()
            })
            .transpose()?;
        Ok(Self {
            id: header.id.map(Cow::into_owned),
            inputs: tensors(header.inputs, binary, "input")?,
            outputs,
            binary_output,
            parameters,
        })
    }

    fn header<'a>(&'a self, binary: &mut Vec<u8>) -> RequestHeader<'a> {
        RequestHeader {
            id: self.id.as_deref().map(Cow::Borrowed),
            inputs: tensor_headers(&self.inputs, binary),
            outputs: self.outputs.as_ref().map(|list| {
                list.iter()
                    .map(|o| OutputHeader {
                        name: Cow::Borrowed(&o.name),
                        parameters: with_parameter(
                            &o.parameters,
                            o.binary.map(|b| (BINARY_DATA, Value::Bool(b))),
                        ),
                    })
                    .collect()
            }),
            parameters: with_parameter(
                &self.parameters,
                self.binary_output
                    .then_some((BINARY_DATA_OUTPUT, Value::Bool(true))),
            ),
        }
    }

    fn tensors(&self) -> &[InferTensor] {
        &self.inputs
    }
}

impl Body for InferResponse {
    type Header<'a> = ResponseHeader<'a>;
    const KIND: &'static str = "response";

    fn from_header(header: ResponseHeader<'_>, binary: Option<&[u8]>) -> Result<Self, KserveError> {
        Ok(Self {
            model_name: header.model_name.into_owned(),
            id: header.id.map(Cow::into_owned),
            outputs: tensors(header.outputs, binary, "output")?,
        })
    }

    fn header<'a>(&'a self, binary: &mut Vec<u8>) -> ResponseHeader<'a> {
        ResponseHeader {
            model_name: Cow::Borrowed(&self.model_name),
            id: self.id.as_deref().map(Cow::Borrowed),
            outputs: tensor_headers(&self.outputs, binary),
        }
    }

    fn tensors(&self) -> &[InferTensor] {
        &self.outputs
    }
}

impl InferRequest {
    /// Decodes a request body whose JSON header is `header_length` bytes
    /// long when binary tensor data follows it (the [`HEADER_LENGTH`] field;
    /// `None`: the body is JSON alone).
    pub fn decode(body: &[u8], header_length: Option<usize>) -> Result<Self, KserveError> {
        Self::decode_body(body, header_length)
    }

    /// Encodes the request: binary inputs go after the JSON header.
    pub fn encode(&self) -> Result<Encoded, KserveError> {
        self.encode_body()
    }

    /// How the output `name` is to be sent: as its requested output says,
    /// else as the request's [`InferRequest::binary_output`] says.
    pub fn output_encoding(&self, name: &str) -> Encoding {
        let binary = self
            .outputs
            .iter()
            .flatten()
            .find(|o| o.name == name)
            .and_then(|o| o.binary)
            .unwrap_or(self.binary_output);
        if binary {
            Encoding::Binary
        } else {
            Encoding::Json
        }
    }
}

impl InferResponse {
    /// Decodes a response body (see [`InferRequest::decode`]).
    pub fn decode(body: &[u8], header_length: Option<usize>) -> Result<Self, KserveError> {
        Self::decode_body(body, header_length)
    }

    /// Encodes the response: binary outputs go after the JSON header.
    pub fn encode(&self) -> Result<Encoded, KserveError> {
        self.encode_body()
    }
}

/// The JSON-only form of requests and responses, through the same header:
/// a binary tensor cannot be written in it.
macro_rules! json_form {
    ($($t:ty),*) => {$(
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                if let Some(t) = self.first_binary() {
                    return Err(S::Error::custom(format!(
                        "tensor {:?} is binary: encode the message with its binary section",
                        t.name
                    )));
                }
                self.header(&mut Vec::new()).serialize(s)
            }
        }

        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let header = <<Self as Body>::Header<'de> as Deserialize<'de>>::deserialize(d)?;
                Self::from_header(header, None).map_err(D::Error::custom)
            }
        }
    )*};
}

json_form!(InferRequest, InferResponse);

/// A tensor's name, datatype and shape (`-1` for a dynamic dimension).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TensorMetadata {
    /// Tensor name.
    pub name: String,
    /// Datatype.
    pub datatype: Datatype,
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

/// An error body: `{"error": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(encoding: Encoding) -> InferTensor {
        let values: Vec<f32> = (0..12).map(|i| i as f32 / 7.0 - 0.5).collect();
        InferTensor::new("image", vec![1, 3, 2, 2], &values, encoding).unwrap()
    }

    fn request(encoding: Encoding) -> InferRequest {
        InferRequest {
            id: Some("r1".into()),
            inputs: vec![
                image(encoding),
                InferTensor::int32_json("mask", vec![2], &[1, -2]),
            ],
            outputs: Some(vec![RequestedOutput {
                name: "means".into(),
                binary: Some(true),
                parameters: None,
            }]),
            binary_output: false,
            parameters: None,
        }
    }

    /// A body whose JSON header is `header` followed by `binary`.
    fn body(header: &str, binary: &[u8]) -> (Vec<u8>, Option<usize>) {
        let mut body = header.as_bytes().to_vec();
        body.extend_from_slice(binary);
        (body, Some(header.len()))
    }

    fn refused(header: &str, binary: &[u8]) -> String {
        let (body, len) = body(header, binary);
        InferRequest::decode(&body, len).unwrap_err().0
    }

    const FP32_X: &str = r#"{"inputs":[{"name":"x","shape":[1,3,2,2],"datatype":"FP32","parameters":{"binary_data_size":48}}]}"#;

    #[test]
    fn a_binary_request_round_trips() {
        let request = request(Encoding::Binary);
        let encoded = request.encode().unwrap();
        let header_length = encoded.header_length.unwrap();
        assert_eq!(encoded.content_type(), BINARY_CONTENT_TYPE);
        assert_eq!(encoded.body.len(), header_length + 48);
        let header: Value = serde_json::from_slice(&encoded.body[..header_length]).unwrap();
        assert_eq!(header["inputs"][0]["parameters"]["binary_data_size"], 48);
        assert!(header["inputs"][0].get("data").is_none());
        assert_eq!(header["inputs"][1]["data"], serde_json::json!([1, -2]));
        assert_eq!(header["outputs"][0]["parameters"]["binary_data"], true);
        let decoded = InferRequest::decode(&encoded.body, Some(header_length)).unwrap();
        assert_eq!(decoded, request);
        assert_eq!(
            decoded.inputs[0].values::<f32>().unwrap(),
            image(Encoding::Json).values::<f32>().unwrap()
        );
        // The binary section holds the elements little-endian, in order.
        assert_eq!(
            &encoded.body[header_length..header_length + 4],
            &(-0.5f32).to_le_bytes()
        );
    }

    #[test]
    fn the_sdks_constructors_build_binary_tensors() {
        let request = InferRequest {
            inputs: vec![
                InferTensor::int32("bytes", vec![1, 3], &[256, 0, -7]),
                InferTensor::fp32("x", vec![2], &[0.5, f32::NAN]),
            ],
            binary_output: true,
            ..InferRequest::default()
        };
        let encoded = request.encode().unwrap();
        let header_length = encoded.header_length.unwrap();
        assert_eq!(encoded.content_type(), BINARY_CONTENT_TYPE);
        assert_eq!(encoded.body.len(), header_length + 12 + 8);
        let header: Value = serde_json::from_slice(&encoded.body[..header_length]).unwrap();
        for (input, size) in [(0, 12), (1, 8)] {
            let tensor = &header["inputs"][input];
            assert!(tensor.get("data").is_none(), "{tensor}");
            assert_eq!(tensor["parameters"][BINARY_DATA_SIZE], size);
        }
        assert_eq!(header["parameters"][BINARY_DATA_OUTPUT], true);
        assert_eq!(
            &encoded.body[header_length..header_length + 4],
            &256i32.to_le_bytes()
        );
        let decoded = InferRequest::decode(&encoded.body, Some(header_length)).unwrap();
        assert_eq!(decoded.inputs[0].values::<i32>().unwrap(), [256, 0, -7]);
        assert!(decoded.inputs[1].values::<f32>().unwrap()[1].is_nan());
        assert_eq!(decoded.output_encoding("anything"), Encoding::Binary);
        // JSON numbers only when asked for, and the same elements.
        let json = InferTensor::int32_json("bytes", vec![1, 3], &[256, 0, -7]);
        assert_eq!(json.data.encoding(), Encoding::Json);
        assert_eq!(
            json.into_encoding(Encoding::Binary).unwrap(),
            request.inputs[0]
        );
    }

    #[test]
    fn a_json_request_has_no_binary_section_and_matches_serde() {
        let request = request(Encoding::Json);
        let encoded = request.encode().unwrap();
        assert_eq!(encoded.header_length, None);
        assert_eq!(encoded.content_type(), JSON_CONTENT_TYPE);
        assert_eq!(encoded.body, serde_json::to_vec(&request).unwrap());
        assert_eq!(InferRequest::decode(&encoded.body, None).unwrap(), request);
        let parsed: InferRequest = serde_json::from_slice(&encoded.body).unwrap();
        assert_eq!(parsed, request);
        // A header length that covers the whole body is a JSON body too.
        assert_eq!(
            InferRequest::decode(&encoded.body, Some(encoded.body.len())).unwrap(),
            request
        );
        let binary = super::tests::request(Encoding::Binary);
        let e = serde_json::to_vec(&binary).unwrap_err().to_string();
        assert!(e.contains("\"image\" is binary"), "{e}");
    }

    #[test]
    fn a_binary_response_round_trips() {
        let response = InferResponse {
            model_name: "m".into(),
            id: None,
            outputs: vec![
                InferTensor::new(
                    "means",
                    vec![1, 3],
                    &[0.25f32, f32::NAN, -1.0],
                    Encoding::Binary,
                )
                .unwrap(),
                InferTensor::int32("n", vec![1], &[7]),
            ],
        };
        let encoded = response.encode().unwrap();
        let decoded = InferResponse::decode(&encoded.body, encoded.header_length).unwrap();
        let means = decoded.outputs[0].values::<f32>().unwrap();
        assert_eq!(means[0], 0.25);
        assert!(means[1].is_nan(), "binary carries what JSON cannot");
        assert_eq!(decoded.outputs[1].values::<i32>().unwrap(), vec![7]);
        let e = InferTensor::new("x", vec![1], &[f32::INFINITY], Encoding::Json).unwrap_err();
        assert!(e.0.contains("no JSON number form"), "{e}");
    }

    #[test]
    fn a_size_that_disagrees_with_shape_and_datatype_is_refused() {
        let header = FP32_X.replace("48", "40");
        let e = refused(&header, &[0; 40]);
        assert!(e.contains("input \"x\""), "{e}");
        assert!(e.contains("binary_data_size is 40 bytes"), "{e}");
        assert!(e.contains("needs 48 (12 elements of 4 bytes)"), "{e}");
        let header = FP32_X.replace("[1,3,2,2]", "[1,-3,2,2]");
        let e = refused(&header, &[0; 48]);
        assert!(e.contains("dimension -3 is not a size"), "{e}");
        let header = FP32_X.replace("[1,3,2,2]", "[4294967296,4294967296,4294967296]");
        let e = refused(&header, &[0; 48]);
        assert!(e.contains("too large"), "{e}");
    }

    #[test]
    fn a_truncated_binary_section_is_refused() {
        let e = refused(FP32_X, &[0; 47]);
        assert!(e.contains("input \"x\""), "{e}");
        assert!(e.contains("only 47 bytes of binary data remain"), "{e}");
    }

    #[test]
    fn bytes_after_the_last_tensor_are_refused() {
        let e = refused(FP32_X, &[0; 50]);
        assert!(
            e.contains("2 bytes of binary data follow the last binary tensor"),
            "{e}"
        );
        assert!(e.contains("add up to 48"), "{e}");
    }

    #[test]
    fn a_header_length_beyond_the_body_is_refused() {
        let (body, len) = body(FP32_X, &[0; 48]);
        let e = InferRequest::decode(&body, len.map(|l| l + 49))
            .unwrap_err()
            .0;
        assert!(e.contains(&format!("is {}", body.len() + 1)), "{e}");
        assert!(e.contains(&format!("only {} bytes", body.len())), "{e}");
        // A header length inside the JSON: its first part is not JSON.
        let e = InferRequest::decode(&body, Some(10)).unwrap_err().0;
        assert!(e.contains("malformed inference request JSON"), "{e}");
    }

    #[test]
    fn unknown_datatypes_are_refused_by_name() {
        let header = FP32_X.replace("FP32", "FP33");
        let e = refused(&header, &[0; 48]);
        assert!(e.contains("input \"x\": unknown datatype \"FP33\""), "{e}");
        assert!(e.contains("BOOL, UINT8"), "{e}");
        assert_eq!(Datatype::parse("FP32"), Some(Datatype::Fp32));
        assert!("fp32"
            .parse::<Datatype>()
            .unwrap_err()
            .0
            .contains("unknown"));
    }

    #[test]
    fn binary_parameters_are_checked() {
        let (body, _) = body(FP32_X, &[0; 48]);
        let e = InferRequest::decode(&body[..FP32_X.len()], None)
            .unwrap_err()
            .0;
        assert!(e.contains("no binary section"), "{e}");
        for bad in ["\"48\"", "-48", "48.5", "null"] {
            let e = refused(&FP32_X.replace("48", bad), &[0; 48]);
            assert!(e.contains("is not a byte count"), "{bad}: {e}");
        }
        let both = FP32_X.replace("\"parameters\"", "\"data\":[1],\"parameters\"");
        assert!(refused(&both, &[0; 48]).contains("both data and binary_data_size"));
        let neither = r#"{"inputs":[{"name":"x","shape":[1],"datatype":"FP32"}]}"#;
        assert!(refused(neither, &[]).contains("neither data nor binary_data_size"));
        let output = r#"{"inputs":[],"outputs":[{"name":"y","parameters":{"binary_data":1}}]}"#;
        let e = refused(output, &[]);
        assert!(
            e.contains("requested output \"y\": binary_data must be true or false"),
            "{e}"
        );
        let all = r#"{"inputs":[],"parameters":{"binary_data_output":"yes"}}"#;
        assert!(refused(all, &[]).contains("binary_data_output must be true or false"));
    }

    #[test]
    fn output_encodings_follow_the_request_then_the_output() {
        let r = |all: &str, one: &str| {
            let header =
                format!(r#"{{"inputs":[],"outputs":[{{"name":"a"{one}}},{{"name":"b"}}]{all}}}"#);
            InferRequest::decode(header.as_bytes(), None).unwrap()
        };
        let plain = r("", "");
        assert_eq!(plain.output_encoding("a"), Encoding::Json);
        let all = r(r#","parameters":{"binary_data_output":true}"#, "");
        assert_eq!(all.output_encoding("a"), Encoding::Binary);
        assert_eq!(all.output_encoding("b"), Encoding::Binary);
        assert_eq!(
            all.parameters, None,
            "the extension's parameter is taken out"
        );
        let one = r(
            r#","parameters":{"binary_data_output":true}"#,
            r#","parameters":{"binary_data":false,"x":1}"#,
        );
        assert_eq!(one.output_encoding("a"), Encoding::Json);
        assert_eq!(one.output_encoding("b"), Encoding::Binary);
        assert_eq!(
            one.outputs.as_ref().unwrap()[0].parameters,
            Some(serde_json::from_str(r#"{"x":1}"#).unwrap())
        );
    }

    #[test]
    fn bytes_tensors_are_length_prefixed() {
        let header = r#"{"inputs":[{"name":"s","shape":[2],"datatype":"BYTES","parameters":{"binary_data_size":11}}]}"#;
        let mut data = 2u32.to_le_bytes().to_vec();
        data.extend_from_slice(b"hi");
        data.extend_from_slice(&1u32.to_le_bytes());
        data.push(b'!');
        let (b, len) = body(header, &data);
        let decoded = InferRequest::decode(&b, len).unwrap();
        assert_eq!(decoded.inputs[0].data, TensorData::Binary(data.clone()));
        let mut long = data.clone();
        long[6] = 9;
        let e = refused(header, &long);
        assert!(
            e.contains("element 1 of 2: its length 9 runs past the data"),
            "{e}"
        );
        let one = header.replace("[2]", "[1]");
        let e = refused(&one, &data);
        assert!(e.contains("5 bytes follow its 1 elements"), "{e}");
        let three = header.replace("[2]", "[3]");
        let e = refused(&three, &data);
        assert!(
            e.contains("element 2 of 3: the data ends before its 4-byte length"),
            "{e}"
        );
    }

    #[test]
    fn the_header_length_field_is_read_without_regard_to_case() {
        let fields = |name: &'static str, value: &'static str| {
            header_length([(name.as_bytes(), value.as_bytes())])
        };
        assert_eq!(
            fields("Inference-Header-Content-Length", "12"),
            Ok(Some(12))
        );
        assert_eq!(fields(HEADER_LENGTH, " 7 "), Ok(Some(7)));
        assert_eq!(fields("content-length", "7"), Ok(None));
        for bad in ["", "-1", "+3", "0x10", "1e3", "99999999999999999999999"] {
            let e = fields(HEADER_LENGTH, bad).unwrap_err().0;
            assert!(e.contains("is not a byte count"), "{bad}: {e}");
        }
    }

    #[test]
    fn conversions_between_json_and_binary_are_exact_and_checked() {
        let json = image(Encoding::Json);
        let binary = json.clone().into_encoding(Encoding::Binary).unwrap();
        assert_eq!(binary, image(Encoding::Binary));
        assert_eq!(binary.into_encoding(Encoding::Json).unwrap(), json);
        let mut wide = InferTensor::int32("w", vec![1], &[0]);
        wide.data = TensorData::Json(vec![Number::from(1i64 << 40)]);
        let e = wide.into_encoding(Encoding::Binary).unwrap_err().0;
        assert!(
            e.contains("element 0 (1099511627776) is not a valid INT32"),
            "{e}"
        );
        let big = InferTensor {
            datatype: Datatype::Fp32,
            data: TensorData::Json(vec![Number::from_f64(1e300).unwrap()]),
            ..InferTensor::int32("f", vec![1], &[])
        };
        assert!(big
            .values::<f32>()
            .unwrap_err()
            .0
            .contains("not a valid FP32"));
        let bools = InferTensor {
            datatype: Datatype::Bool,
            data: TensorData::Binary(vec![1]),
            ..InferTensor::int32("b", vec![1], &[])
        };
        let e = bools.into_encoding(Encoding::Json).unwrap_err().0;
        assert!(e.contains("BOOL tensors have no JSON number form"), "{e}");
        let e = image(Encoding::Binary).values::<i32>().unwrap_err().0;
        assert!(e.contains("is FP32, not INT32"), "{e}");
        let ragged = InferTensor {
            data: TensorData::Binary(vec![0; 6]),
            ..image(Encoding::Binary)
        };
        assert!(ragged
            .values::<f32>()
            .unwrap_err()
            .0
            .contains("not a whole number"));
    }
}
