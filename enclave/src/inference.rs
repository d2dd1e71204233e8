//! ONNX Runtime inference behind the KServe v2 signature of the model.
//!
//! ONNX Runtime is loaded at run time from a shared library (`ort`'s
//! `load-dynamic`), so the enclave image pins the exact library it measures.
//! A missing or unloadable library is an error that names the fix.
//!
//! Requests are validated against the model's own signature (names,
//! datatypes, shapes, element ranges) before anything reaches ONNX Runtime;
//! a mismatch is a [`InferError::BadRequest`] that states the expected
//! signature. Each session belongs to a worker of the model's
//! [`Batcher`], which merges concurrent requests into one run.

use std::path::Path;

use kokon_wire::kserve::{
    Datatype, Element, Encoding, InferInput, InferOutput, InferRequest, InferResponse,
    ModelMetadata, TensorMetadata,
};
use ort::environment::Environment;
use ort::session::builder::GraphOptimizationLevel;
use ort::session::{Session, SessionInputValue};
use ort::value::{PrimitiveTensorElementType, Tensor, TensorElementType, ValueType};
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::batcher::{Array, Batcher, Batching, Data, Run};

/// Where inference runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Device {
    /// ONNX Runtime's CPU execution provider.
    Cpu,
    /// ONNX Runtime's CUDA execution provider (GPU in confidential-computing mode in production).
    Cuda,
}

impl Device {
    /// Its name, as `--device` takes it and the serving configuration states it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cpu => "cpu",
            Self::Cuda => "cuda",
        }
    }
}

impl std::str::FromStr for Device {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "cpu" => Ok(Self::Cpu),
            "cuda" => Ok(Self::Cuda),
            other => Err(format!("unknown device {other:?}: expected cpu or cuda")),
        }
    }
}

/// Why the model could not be loaded or run.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum InferError {
    /// ONNX Runtime's shared library could not be loaded.
    #[error("cannot load ONNX Runtime from {path}: {reason}. Install it with `just setup` (PyPI onnxruntime into .cache/) or pass --ort-lib")]
    Runtime {
        /// The library path tried.
        path: String,
        /// The loader's error.
        reason: String,
    },
    /// The model could not be loaded.
    #[error("cannot load model {path}: {reason}")]
    Model {
        /// The model path.
        path: String,
        /// Why.
        reason: String,
    },
    /// The request does not fit the model's signature.
    #[error("{0}")]
    BadRequest(String),
    /// ONNX Runtime failed while running.
    #[error("inference failed: {0}")]
    Run(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DType {
    Int32,
    Int64,
    Fp32,
}

impl DType {
    fn from_ort(t: TensorElementType) -> Option<Self> {
        match t {
            TensorElementType::Int32 => Some(Self::Int32),
            TensorElementType::Int64 => Some(Self::Int64),
            TensorElementType::Float32 => Some(Self::Fp32),
            _ => None,
        }
    }

    fn datatype(self) -> Datatype {
        match self {
            Self::Int32 => Datatype::Int32,
            Self::Int64 => Datatype::Int64,
            Self::Fp32 => Datatype::Fp32,
        }
    }
}

#[derive(Debug, Clone)]
struct Spec {
    name: String,
    dtype: DType,
    shape: Vec<i64>,
}

impl Spec {
    fn metadata(&self) -> TensorMetadata {
        TensorMetadata {
            name: self.name.clone(),
            datatype: self.dtype.datatype(),
            shape: self.shape.clone(),
        }
    }
}

fn signature_text(specs: &[Spec]) -> String {
    specs
        .iter()
        .map(|s| format!("{} {} {:?}", s.name, s.dtype.datatype(), s.shape))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A loaded model with its signature and its sessions' batcher.
pub struct Model {
    name: String,
    digest: [u8; 32],
    inputs: Vec<Spec>,
    outputs: Vec<Spec>,
    batcher: Batcher,
    max_batch: usize,
    runtime: String,
    parameters: crate::parameters::ModelParameters,
}

/// A session and the signature it runs: what the batcher lends to one run at a time.
struct SessionRunner {
    session: Session,
    inputs: Vec<Spec>,
    outputs: Vec<Spec>,
}

impl Run for SessionRunner {
    fn run(&mut self, inputs: Vec<Array>) -> Result<Vec<Array>, String> {
        let values = self
            .inputs
            .iter()
            .zip(inputs)
            .map(|(spec, array)| Ok((spec.name.clone(), ort_tensor(spec, array)?)))
            .collect::<Result<Vec<(String, SessionInputValue<'static>)>, String>>()?;
        let results = self.session.run(values).map_err(|e| e.to_string())?;
        self.outputs
            .iter()
            .map(|spec| {
                let value = results
                    .get(spec.name.as_str())
                    .ok_or_else(|| format!("output {:?} missing", spec.name))?;
                array(spec, value)
            })
            .collect()
    }
}

/// Whether every input and output has its batch as its first, dynamic,
/// dimension: then requests can be concatenated into one run.
fn batch_major(specs: &[Spec]) -> bool {
    specs.iter().all(|s| s.shape.first() == Some(&-1))
}

fn specs(outlets: &[ort::value::Outlet], what: &str) -> Result<Vec<Spec>, String> {
    outlets
        .iter()
        .map(|o| match o.dtype() {
            ValueType::Tensor { ty, shape, .. } => Ok(Spec {
                name: o.name().to_string(),
                dtype: DType::from_ort(*ty).ok_or_else(|| {
                    format!("{what} {:?} has unsupported element type {ty:?}", o.name())
                })?,
                shape: shape.iter().copied().collect(),
            }),
            other => Err(format!("{what} {:?} is not a tensor ({other:?})", o.name())),
        })
        .collect()
}

/// Loads the ONNX Runtime library once per process.
pub fn load_runtime(lib: &Path) -> Result<Environment, InferError> {
    let err = |reason: String| InferError::Runtime {
        path: lib.display().to_string(),
        reason,
    };
    if !lib.is_file() {
        return Err(err("no such file".into()));
    }
    ort::init_from(lib)
        .map_err(|e| err(e.to_string()))?
        .with_name("kokon")
        .build()
        .map_err(|e| err(e.to_string()))
}

impl Model {
    /// Loads `path` into `sessions` ONNX Runtime sessions on `device`,
    /// accepting up to `max_batch` rows a request and merging concurrent
    /// requests as `batching` says.
    pub fn load(
        env: &Environment,
        path: &Path,
        name: &str,
        device: Device,
        sessions: usize,
        max_batch: usize,
        batching: Batching,
    ) -> Result<Self, InferError> {
        let model_err = |reason: String| InferError::Model {
            path: path.display().to_string(),
            reason,
        };
        let bytes = std::fs::read(path).map_err(|e| model_err(e.to_string()))?;
        let digest: [u8; 32] = Sha256::digest(&bytes).into();
        let mut pool = Vec::new();
        for _ in 0..sessions.max(1) {
            let builder = Session::builder(env)
                .map_err(|e| model_err(e.to_string()))?
                .with_optimization_level(GraphOptimizationLevel::Level3)
                .map_err(|e| model_err(e.to_string()))?
                .with_intra_threads(1)
                .map_err(|e| model_err(e.to_string()))?;
            pool.push(
                device
                    .configure(builder)
                    .map_err(model_err)?
                    .commit_from_memory(&bytes)
                    .map_err(|e| model_err(e.to_string()))?,
            );
        }
        let first = pool.first().ok_or_else(|| model_err("no session".into()))?;
        let inputs = specs(first.inputs(), "input").map_err(model_err)?;
        let outputs = specs(first.outputs(), "output").map_err(model_err)?;
        let mergeable = batch_major(&inputs) && batch_major(&outputs);
        let runners = pool
            .into_iter()
            .map(|session| SessionRunner {
                session,
                inputs: inputs.clone(),
                outputs: outputs.clone(),
            })
            .collect();
        let batcher = Batcher::new(runners, batching, mergeable);
        let runtime = format!(
            "onnxruntime (api {}) {}",
            ort::MINOR_VERSION,
            device.as_str()
        );
        Ok(Self {
            name: name.into(),
            digest,
            inputs,
            outputs,
            batcher,
            max_batch,
            runtime,
            parameters: crate::parameters::for_model(path)
                .map_err(|e| model_err(format!("{e:#}")))?,
        })
    }

    /// Reports its runs (waits, rows and requests per run, timings) to `metrics`.
    pub fn observed_by(self, metrics: crate::metrics::ModelMetrics) -> Self {
        self.batcher.observed_by(metrics);
        self
    }

    /// The name the model is served under.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// SHA-256 of the ONNX file.
    pub fn digest(&self) -> [u8; 32] {
        self.digest
    }

    /// Runtime and device, for the claims.
    pub fn runtime(&self) -> &str {
        &self.runtime
    }

    /// KServe v2 model metadata.
    pub fn metadata(&self) -> ModelMetadata {
        ModelMetadata {
            name: self.name.clone(),
            versions: vec!["1".into()],
            platform: "onnxruntime_onnx".into(),
            inputs: self.inputs.iter().map(Spec::metadata).collect(),
            outputs: self.outputs.iter().map(Spec::metadata).collect(),
            parameters: (!self.parameters.value.is_empty()).then(|| self.parameters.value.clone()),
        }
    }

    /// The files the client-side parameters were read from, as measured.
    pub fn parameter_files(&self) -> &[crate::parameters::MeasuredFile] {
        &self.parameters.files
    }

    /// Validates a request against the signature, runs it (merged with
    /// concurrent requests), and returns the response with the number of
    /// units (its batch rows) consumed.
    pub fn infer(&self, request: &InferRequest) -> Result<(InferResponse, u64), InferError> {
        let expected = || format!("expected inputs [{}]", signature_text(&self.inputs));
        if request.inputs.len() != self.inputs.len() {
            return Err(InferError::BadRequest(format!(
                "{} inputs given; {}",
                request.inputs.len(),
                expected()
            )));
        }
        let mut arrays = Vec::with_capacity(self.inputs.len());
        let mut batch = None;
        for spec in &self.inputs {
            let input = request
                .inputs
                .iter()
                .find(|i| i.name == spec.name)
                .ok_or_else(|| {
                    InferError::BadRequest(format!(
                        "input {:?} missing (given {:?}); {}",
                        spec.name,
                        request
                            .inputs
                            .iter()
                            .map(|i| i.name.as_str())
                            .collect::<Vec<_>>(),
                        expected()
                    ))
                })?;
            let shape = check_shape(spec, input, self.max_batch)
                .map_err(|e| InferError::BadRequest(format!("{e}; {}", expected())))?;
            let rows = shape.first().copied().unwrap_or(1);
            if *batch.get_or_insert(rows) != rows {
                return Err(InferError::BadRequest(
                    "inputs disagree on the batch size".into(),
                ));
            }
            let data = elements(spec, input, &shape)
                .map_err(|e| InferError::BadRequest(format!("{e}; {}", expected())))?;
            arrays.push(Array { shape, data });
        }
        // The outputs asked for, by their position in the model's outputs.
        let wanted: Vec<usize> = match &request.outputs {
            None => (0..self.outputs.len()).collect(),
            Some(list) => list
                .iter()
                .map(|o| {
                    self.outputs
                        .iter()
                        .position(|s| s.name == o.name)
                        .ok_or_else(|| {
                            InferError::BadRequest(format!(
                                "unknown output {:?}; outputs are [{}]",
                                o.name,
                                signature_text(&self.outputs)
                            ))
                        })
                })
                .collect::<Result<_, _>>()?,
        };
        let results = self
            .batcher
            .infer(arrays, batch.unwrap_or(1))
            .map_err(InferError::Run)?;
        let mut outputs = Vec::with_capacity(wanted.len());
        for index in wanted {
            let (Some(spec), Some(array)) = (self.outputs.get(index), results.get(index)) else {
                return Err(InferError::Run(format!("output {index} missing")));
            };
            outputs.push(output(spec, array, request.output_encoding(&spec.name))?);
        }
        let units = batch.and_then(|b| u64::try_from(b).ok()).unwrap_or(1);
        Ok((
            InferResponse {
                model_name: self.name.clone(),
                id: request.id.clone(),
                outputs,
            },
            units,
        ))
    }
}

/// Loads a text model directory (`scripts/llm/gguf_to_onnx.py`) and starts
/// its generation engine on `device`, decoding up to `max_batch` sequences
/// together and reporting its work to `metrics`.
pub fn load_text_model(
    env: &Environment,
    dir: &Path,
    device: Device,
    max_batch: usize,
    metrics: &std::sync::Arc<crate::metrics::Metrics>,
) -> Result<kokon_llm::Engine, InferError> {
    let model_err = |reason: String| InferError::Model {
        path: dir.display().to_string(),
        reason,
    };
    let model = kokon_llm::TextModel::load(dir).map_err(|e| model_err(e.to_string()))?;
    // One intra-op thread per CPU this process may run on (its affinity,
    // which `--cpus` sets): ONNX Runtime's default counts the machine's
    // cores, and more spinning threads than CPUs starve the working one.
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let builder = Session::builder(env)
        .map_err(|e| model_err(e.to_string()))?
        .with_optimization_level(GraphOptimizationLevel::Level3)
        .map_err(|e| model_err(e.to_string()))?
        .with_intra_threads(threads)
        .map_err(|e| model_err(e.to_string()))?;
    let builder = device.configure(builder).map_err(model_err)?;
    let observer = std::sync::Arc::new(metrics.model(&model.config.name));
    kokon_llm::Engine::start(
        std::sync::Arc::new(model),
        builder,
        kokon_llm::EngineOptions {
            max_batch,
            cache: device.cache(),
            ..Default::default()
        },
        observer,
    )
    .map_err(|e| model_err(e.to_string()))
}

/// Whether this build can run on CUDA (the `cuda` feature).
pub const CUDA_BUILT: bool = cfg!(feature = "cuda");

impl Device {
    /// Where the text model's key/value caches stay between decode steps:
    /// this device's memory.
    pub fn cache(self) -> kokon_llm::CacheDevice {
        match self {
            Self::Cpu => kokon_llm::CacheDevice::Cpu,
            Self::Cuda => kokon_llm::CacheDevice::Cuda,
        }
    }

    /// Whether this build can run on this device: an error naming the
    /// missing `cuda` feature, checked before the GPUs are touched.
    pub fn built(self) -> Result<(), String> {
        match self {
            Self::Cuda if !CUDA_BUILT => Err(NOT_BUILT_FOR_CUDA.into()),
            _ => Ok(()),
        }
    }

    /// Puts a session being built on this device: nothing to do for the CPU;
    /// ONNX Runtime's CUDA execution provider, which must load, for CUDA.
    pub fn configure(
        self,
        builder: ort::session::builder::SessionBuilder,
    ) -> Result<ort::session::builder::SessionBuilder, String> {
        match self {
            Self::Cpu => Ok(builder),
            Self::Cuda => with_cuda(builder),
        }
    }
}

/// ONNX Runtime's CUDA execution provider, with TF32 off: the CUDA path
/// computes in full FP32 like the CPU one, so a model gives the same answers
/// (the text model's greedy tokens) on either device. The models served are
/// small; their decode steps are bound by memory, not by FP32 throughput.
///
/// cuDNN picks its convolution algorithms by heuristics instead of ONNX
/// Runtime's default exhaustive search, which benchmarks every algorithm
/// the first time a session sees an input shape: dynamic batching gives a
/// session up to `--batch-max-rows` shapes (magika has a convolution), so
/// exhaustive search would stall serving on each new batch size for as
/// long as it runs (unmeasured on a GPU yet: see docs/benchmarks.md).
#[cfg(feature = "cuda")]
fn with_cuda(
    builder: ort::session::builder::SessionBuilder,
) -> Result<ort::session::builder::SessionBuilder, String> {
    builder
        .with_execution_providers([ort::ep::CUDA::default()
            .with_tf32(false)
            .with_conv_algorithm_search(ort::ep::cuda::ConvAlgorithmSearch::Heuristic)
            .build()
            .error_on_failure()])
        .map_err(|e| format!("CUDA execution provider unavailable: {e}"))
}

#[cfg(not(feature = "cuda"))]
fn with_cuda(
    _: ort::session::builder::SessionBuilder,
) -> Result<ort::session::builder::SessionBuilder, String> {
    Err(NOT_BUILT_FOR_CUDA.into())
}

/// Why a build without the `cuda` feature cannot run on CUDA.
const NOT_BUILT_FOR_CUDA: &str = "this enclave was built without the `cuda` feature; rebuild with `--features cuda` or use --device cpu";

fn check_shape(spec: &Spec, input: &InferInput, max_batch: usize) -> Result<Vec<usize>, String> {
    if input.datatype != spec.dtype.datatype() {
        return Err(format!(
            "input {:?}: datatype {} given, {} expected",
            spec.name,
            input.datatype,
            spec.dtype.datatype()
        ));
    }
    if input.shape.len() != spec.shape.len() {
        return Err(format!(
            "input {:?}: shape {:?} given, rank {} expected ({:?})",
            spec.name,
            input.shape,
            spec.shape.len(),
            spec.shape
        ));
    }
    let mut shape = Vec::with_capacity(input.shape.len());
    for (given, want) in input.shape.iter().zip(&spec.shape) {
        let dim = usize::try_from(*given)
            .ok()
            .filter(|d| *d > 0)
            .ok_or_else(|| format!("input {:?}: dimension {given} is not positive", spec.name))?;
        if *want >= 0 && *given != *want {
            return Err(format!(
                "input {:?}: shape {:?} given, {:?} expected",
                spec.name, input.shape, spec.shape
            ));
        }
        shape.push(dim);
    }
    if let Some(rows) = shape.first() {
        if spec.shape.first() == Some(&-1) && *rows > max_batch {
            return Err(format!(
                "input {:?}: batch of {rows} exceeds the limit of {max_batch}",
                spec.name
            ));
        }
    }
    Ok(shape)
}

/// The input's elements, whose count must match `shape`.
fn elements(spec: &Spec, input: &InferInput, shape: &[usize]) -> Result<Data, String> {
    Ok(match spec.dtype {
        DType::Int32 => Data::Int32(typed_elements(spec, input, shape)?),
        DType::Int64 => Data::Int64(typed_elements(spec, input, shape)?),
        DType::Fp32 => Data::Fp32(typed_elements(spec, input, shape)?),
    })
}

fn typed_elements<T: Element>(
    spec: &Spec,
    input: &InferInput,
    shape: &[usize],
) -> Result<Vec<T>, String> {
    let data = input.values::<T>().map_err(|e| e.to_string())?;
    let count = shape
        .iter()
        .try_fold(1usize, |acc, d| acc.checked_mul(*d))
        .ok_or_else(|| format!("input {:?}: shape too large", spec.name))?;
    if count != data.len() {
        return Err(format!(
            "input {:?}: shape {:?} needs {count} elements, {} given",
            spec.name,
            input.shape,
            data.len()
        ));
    }
    Ok(data)
}

/// An input array as an ONNX Runtime tensor.
fn ort_tensor(spec: &Spec, array: Array) -> Result<SessionInputValue<'static>, String> {
    let input = |e: ort::Error| format!("input {:?}: {e}", spec.name);
    Ok(match array.data {
        Data::Int32(v) => Tensor::from_array((array.shape, v)).map_err(input)?.into(),
        Data::Int64(v) => Tensor::from_array((array.shape, v)).map_err(input)?.into(),
        Data::Fp32(v) => Tensor::from_array((array.shape, v)).map_err(input)?.into(),
    })
}

/// An ONNX Runtime output as an array of its signature's datatype.
fn array(spec: &Spec, value: &ort::value::DynValue) -> Result<Array, String> {
    Ok(match spec.dtype {
        DType::Int32 => typed_array(spec, value, Data::Int32)?,
        DType::Int64 => typed_array(spec, value, Data::Int64)?,
        DType::Fp32 => typed_array(spec, value, Data::Fp32)?,
    })
}

fn typed_array<T: PrimitiveTensorElementType + Clone>(
    spec: &Spec,
    value: &ort::value::DynValue,
    data: fn(Vec<T>) -> Data,
) -> Result<Array, String> {
    let (shape, values) = value
        .try_extract_tensor::<T>()
        .map_err(|e| format!("output {:?}: {e}", spec.name))?;
    let shape = shape
        .iter()
        .map(|d| usize::try_from(*d).map_err(|_| format!("output {:?}: dimension {d}", spec.name)))
        .collect::<Result<_, _>>()?;
    Ok(Array {
        shape,
        data: data(values.to_vec()),
    })
}

/// An output array as a KServe tensor travelling as `encoding`.
fn output(spec: &Spec, array: &Array, encoding: Encoding) -> Result<InferOutput, InferError> {
    let shape = array
        .shape
        .iter()
        .map(|d| i64::try_from(*d).unwrap_or(i64::MAX))
        .collect();
    match &array.data {
        Data::Int32(v) => InferOutput::new(&spec.name, shape, v, encoding),
        Data::Int64(v) => InferOutput::new(&spec.name, shape, v, encoding),
        Data::Fp32(v) => InferOutput::new(&spec.name, shape, v, encoding),
    }
    .map_err(|e| InferError::Run(e.to_string()))
}
