//! `-info`: describe the runtime to containerd (2.2+ asks before using a non-runc shim).

use std::io::{IsTerminal, Read, Write};
use std::sync::Arc;

use containerd_shim::protos::protobuf::well_known_types::any::Any;
use containerd_shim::protos::protobuf::{Message, MessageField};
use containerd_shim_protos::types::introspection::{RuntimeInfo, RuntimeVersion};
use runc_driver::StdMonitor;

use crate::error::{Error, Result};
use crate::options::RuntimeConfig;
use crate::task::runtime;

/// The type containerd expects for the OCI runtime's `features` JSON.
const FEATURES_TYPE: &str = "types.containerd.io/opencontainers/runtime-spec/1/features/Features";

pub fn run() -> Result<()> {
    let mut input = Vec::new();
    if !std::io::stdin().is_terminal() {
        let _ = std::io::stdin()
            .lock()
            .take(1 << 20)
            .read_to_end(&mut input);
    }
    let options = Any::parse_from_bytes(&input)
        .ok()
        .filter(|a| !a.type_url.is_empty());
    let cfg = RuntimeConfig::host_defaults().and_then(|d| d.with_request(options.as_ref()))?;
    let runtime = runtime(&cfg, None, Arc::new(StdMonitor));
    let features = runtime
        .ok()
        .and_then(|r| r.features().ok())
        .map(|json| Any {
            type_url: FEATURES_TYPE.to_string(),
            value: json,
            ..Default::default()
        });
    let info = RuntimeInfo {
        name: super::RUNTIME_NAME.to_string(),
        version: MessageField::some(RuntimeVersion {
            version: env!("CARGO_PKG_VERSION").to_string(),
            revision: option_env!("RSRUNC_REVISION")
                .unwrap_or("unknown")
                .to_string(),
            ..Default::default()
        }),
        options: options.into(),
        features: features.into(),
        ..Default::default()
    };
    let bytes = info
        .write_to_bytes()
        .map_err(|e| Error::internal(format!("encode runtime info: {e}")))?;
    let mut out = std::io::stdout().lock();
    out.write_all(&bytes)
        .and_then(|()| out.flush())
        .map_err(|e| Error::io("write runtime info", e))
}
