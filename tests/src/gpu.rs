//! Whether the tests that need an NVIDIA GPU can run here. They run when
//! the tests were built with the `cuda` feature (`cargo test --features
//! kokon-tests/cuda`, which builds the enclave with it too) and the machine
//! has an NVIDIA GPU; otherwise each says why and passes without running.
//! ONNX Runtime must then be the onnxruntime-gpu build (`just setup-gpu`
//! writes `KOKON_ORT_LIB` for it into `.cache/kokon-gpu.env`).

use std::path::Path;

use kokon_enclave::inference::Device;

/// The NVIDIA driver's control device, present where a GPU is.
pub const NVIDIA_CONTROL_DEVICE: &str = "/dev/nvidiactl";

/// Why GPU tests cannot run here, or `None` when they can.
pub fn unavailable() -> Option<String> {
    if !kokon_enclave::inference::CUDA_BUILT {
        return Some(
            "built without the `cuda` feature (cargo test --features kokon-tests/cuda)".into(),
        );
    }
    if !Path::new(NVIDIA_CONTROL_DEVICE).exists() {
        return Some(format!("no NVIDIA GPU ({NVIDIA_CONTROL_DEVICE} absent)"));
    }
    None
}

/// True when `test` must skip: prints why on standard error.
pub fn skip(test: &str) -> bool {
    match unavailable() {
        Some(why) => {
            eprintln!("{test}: skipped: {why}");
            true
        }
        None => false,
    }
}

/// Asks the bench to also measure on the GPU when set to `cuda`.
pub const BENCH_DEVICE_ENV: &str = "KOKON_BENCH_DEVICE";

/// The device [`BENCH_DEVICE_ENV`] names (`cpu` when unset).
pub fn bench_device() -> Result<Device, String> {
    match std::env::var(BENCH_DEVICE_ENV) {
        Ok(name) => name.parse().map_err(|e| format!("{BENCH_DEVICE_ENV}: {e}")),
        Err(_) => Ok(Device::Cpu),
    }
}

/// The devices the bench measures the text model on: the CPU, and the GPU
/// too when [`BENCH_DEVICE_ENV`] is `cuda` (GPU against CPU in one run).
pub fn bench_devices() -> Result<Vec<Device>, String> {
    Ok(match bench_device()? {
        Device::Cpu => vec![Device::Cpu],
        Device::Cuda => vec![Device::Cpu, Device::Cuda],
    })
}

/// The enclave arguments that run it on `device`, on a GPU that is not in
/// confidential-computing mode too: `--device`, and for CUDA `--gpu-mode
/// development`, which the serving configuration states.
pub fn device_args(device: Device) -> Vec<String> {
    let mut args = vec!["--device".to_string(), device.as_str().to_string()];
    if device == Device::Cuda {
        args.extend(["--gpu-mode".to_string(), "development".to_string()]);
    }
    args
}
