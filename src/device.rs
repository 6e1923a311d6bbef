//! Which backend runs the tensor math: burn's pure-Rust CPU backend (`flex`, always built) or,
//! with the `wgpu` / `cuda` Cargo features, a GPU. Every command and library entry point asks
//! [`default_device`], so one setting moves the whole program.

use std::sync::OnceLock;

use burn::prelude::Device;

use crate::{Error, Result};

static CHOSEN: OnceLock<Device> = OnceLock::new();

/// The device every command uses: the one given to [`set_default_device`], else the CPU.
pub fn default_device() -> Device {
    CHOSEN.get().cloned().unwrap_or_else(Device::flex)
}

/// Makes `device` the program's device; call it once, before any tensor exists.
pub fn set_default_device(device: Device) -> Result<()> {
    let chosen = CHOSEN.get_or_init(|| device.clone());
    if *chosen != device {
        return Err(Error::Input(format!(
            "the device is already {chosen:?}; it can be chosen once per process"
        )));
    }
    Ok(())
}

/// A device by name: `cpu`; `wgpu` or `wgpu:N` (the best GPU, or the N-th discrete one;
/// feature `wgpu`); `cuda` or `cuda:N` (feature `cuda`).
pub fn parse_device(name: &str) -> Result<Device> {
    let (kind, index) = match name.split_once(':') {
        Some((kind, index)) => {
            let index = index.parse::<usize>().map_err(|_| {
                Error::Input(format!("device index must be a number, got {name:?}"))
            })?;
            (kind, Some(index))
        }
        None => (name, None),
    };
    match (kind, index) {
        ("cpu", None) => Ok(Device::flex()),
        #[cfg(feature = "cuda")]
        ("cuda", index) => Ok(Device::cuda(index.unwrap_or(0))),
        #[cfg(feature = "wgpu")]
        ("wgpu", index) => Ok(Device::wgpu(match index {
            Some(i) => burn::tensor::DeviceKind::DiscreteGpu(i),
            None => burn::tensor::DeviceKind::DefaultDevice,
        })),
        #[cfg(not(feature = "cuda"))]
        ("cuda", _) => Err(not_built("cuda")),
        #[cfg(not(feature = "wgpu"))]
        ("wgpu", _) => Err(not_built("wgpu")),
        _ => Err(Error::Input(format!(
            "unknown device {name:?}; expected cpu, cuda[:N] or wgpu[:N]"
        ))),
    }
}

#[allow(dead_code)] // unused when both GPU features are on
fn not_built(kind: &str) -> Error {
    Error::Input(format!(
        "this aigc was built without the {kind} backend; rebuild with `--features {kind}`"
    ))
}

/// Whether `device` is the CPU backend, where the one-row decoding kernels apply.
pub(crate) fn is_cpu(device: &Device) -> bool {
    *device == Device::flex()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_or_say_what_is_wrong() {
        assert!(is_cpu(&parse_device("cpu").unwrap()));
        let err = |name| parse_device(name).unwrap_err().to_string();
        assert!(err("tpu").contains("expected cpu, cuda[:N] or wgpu[:N]"));
        assert!(err("cuda:x").contains("must be a number"));
        assert!(err("cpu:1").contains("unknown device"));
        if !cfg!(feature = "wgpu") {
            assert!(err("wgpu").contains("rebuild with `--features wgpu`"));
        }
    }
}
