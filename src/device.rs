//! Which backend runs the tensor math: burn's pure-Rust CPU backend (`flex`, always built) or,
//! with the `wgpu` / `cuda` Cargo features, a GPU. Every command and library entry point asks
//! [`default_device`], so one setting moves the whole program. Training can also spread each
//! step over several devices ([`set_devices`]).

use std::sync::OnceLock;

use burn::prelude::Device;

use crate::{Error, Result};

static CHOSEN: OnceLock<Vec<Device>> = OnceLock::new();

/// The device every command uses: the first given to [`set_devices`], else the CPU.
pub fn default_device() -> Device {
    CHOSEN
        .get()
        .map_or_else(Device::flex, |devices| devices[0].clone())
}

/// The devices after the first: training runs each step's batch on all of them too.
pub(crate) fn extra_devices() -> Vec<Device> {
    CHOSEN.get().map_or_else(Vec::new, |d| d[1..].to_vec())
}

/// Makes `device` the program's device; call it once, before any tensor exists.
pub fn set_default_device(device: Device) -> Result<()> {
    set_devices(vec![device])
}

/// Makes `devices[0]` the program's device, and has training split each step's batch over
/// all of `devices` (data parallelism); call it once, before any tensor exists.
pub fn set_devices(devices: Vec<Device>) -> Result<()> {
    if devices.is_empty() {
        return Err(Error::Input("no device given".into()));
    }
    let chosen = CHOSEN.get_or_init(|| devices.clone());
    if *chosen != devices {
        return Err(Error::Input(format!(
            "the devices are already {chosen:?}; they can be chosen once per process"
        )));
    }
    Ok(())
}

/// Devices by comma-separated names (`cuda:0,cuda:1`), each as for [`parse_device`]: all of
/// one kind and none twice.
pub fn parse_devices(names: &str) -> Result<Vec<Device>> {
    let names: Vec<&str> = names.split(',').map(str::trim).collect();
    let kind = |name: &str| name.split(':').next().unwrap_or_default().to_string();
    if let Some(other) = names.iter().find(|n| kind(n) != kind(names[0])) {
        return Err(Error::Input(format!(
            "devices must be of one kind, got {} and {other}",
            names[0]
        )));
    }
    let devices = names
        .iter()
        .map(|name| parse_device(name))
        .collect::<Result<Vec<_>>>()?;
    for (i, device) in devices.iter().enumerate() {
        if devices[..i].contains(device) {
            return Err(Error::Input(format!("device {} is listed twice", names[i])));
        }
    }
    Ok(devices)
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

/// Whether `device` is the CPU backend (`flex`), with or without autodiff.
pub(crate) fn is_cpu(device: &Device) -> bool {
    device.clone().inner() == Device::flex()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_or_say_what_is_wrong() {
        assert!(is_cpu(&parse_device("cpu").unwrap()));
        assert!(is_cpu(&parse_device("cpu").unwrap().autodiff()));
        let err = |name| parse_device(name).unwrap_err().to_string();
        assert!(err("tpu").contains("expected cpu, cuda[:N] or wgpu[:N]"));
        assert!(err("cuda:x").contains("must be a number"));
        assert!(err("cpu:1").contains("unknown device"));
        assert_eq!(parse_devices("cpu").unwrap().len(), 1);
        let err = |names| parse_devices(names).unwrap_err().to_string();
        assert!(err("cpu,cpu").contains("listed twice"));
        assert!(err("cpu,tpu").contains("one kind"));
        if !cfg!(feature = "wgpu") {
            assert!(err("wgpu").contains("rebuild with `--features wgpu`"));
        }
    }
}
