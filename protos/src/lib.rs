//! Protobuf messages that containerd sends to runtime shims but that
//! `containerd-shim-protos` does not generate, and the cgroup statistics a shim returns
//! ([`metrics`]), written without generated code.
//!
//! The options are small and flat, so they are decoded field by field with protobuf's
//! wire-format reader instead of generated code.

#![forbid(unsafe_code)]

pub mod metrics;

use protobuf::{CodedInputStream, CodedOutputStream};

/// `runtimeoptions.v1.Options`: what CRI sends for a `runtime_type` other than
/// runc's, what `ctr run --runtime-config-path` and Docker's `options.ConfigPath` send.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RuntimeOptions {
    pub type_url: String,
    pub config_path: String,
    /// TOML text of the runtime's options table (CRI); field 3, `bytes` on the wire.
    pub config_body: String,
}

/// `containerd.linux.runc.CreateOptions`: the legacy type the 1.x Go client sends when a
/// runtime name does not look like runc.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LegacyCreateOptions {
    pub no_pivot_root: bool,
    pub terminal: bool,
    pub no_new_keyring: bool,
    pub shim_cgroup: String,
    pub io_uid: u32,
    pub io_gid: u32,
    pub criu_work_path: String,
    pub criu_image_path: String,
}

/// `containerd.v1.types.ProcessDetails`'s runc twin, `containerd.runc.v1.ProcessDetails`:
/// attached to each pid in a Pids reply that belongs to an exec.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ProcessDetails {
    pub exec_id: String,
}

/// Full names, as they appear at the end of an `Any`'s type URL.
pub const RUNTIME_OPTIONS_NAME: &str = "runtimeoptions.v1.Options";
pub const LEGACY_CREATE_OPTIONS_NAME: &str = "containerd.linux.runc.CreateOptions";
pub const PROCESS_DETAILS_NAME: &str = "containerd.runc.v1.ProcessDetails";

/// A message that could not be decoded; names the message and what was wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    pub message: &'static str,
    pub reason: String,
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "malformed {}: {}", self.message, self.reason)
    }
}

impl std::error::Error for DecodeError {}

const WIRE_VARINT: u32 = 0;
const WIRE_LEN: u32 = 2;

impl RuntimeOptions {
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut out = Self::default();
        decode_fields(RUNTIME_OPTIONS_NAME, bytes, |field, wire, input| {
            match (field, wire) {
                (1, WIRE_LEN) => out.type_url = read_string(input)?,
                (2, WIRE_LEN) => out.config_path = read_string(input)?,
                (3, WIRE_LEN) => out.config_body = read_string(input)?,
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        Ok(out)
    }

    pub fn encode(&self) -> Vec<u8> {
        encode_with(|out| {
            write_string(out, 1, &self.type_url)?;
            write_string(out, 2, &self.config_path)?;
            write_string(out, 3, &self.config_body)
        })
    }
}

impl LegacyCreateOptions {
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut out = Self::default();
        decode_fields(LEGACY_CREATE_OPTIONS_NAME, bytes, |field, wire, input| {
            match (field, wire) {
                (1, WIRE_VARINT) => out.no_pivot_root = input.read_bool()?,
                (4, WIRE_VARINT) => out.terminal = input.read_bool()?,
                (8, WIRE_VARINT) => out.no_new_keyring = input.read_bool()?,
                (9, WIRE_LEN) => out.shim_cgroup = read_string(input)?,
                (10, WIRE_VARINT) => out.io_uid = input.read_uint32()?,
                (11, WIRE_VARINT) => out.io_gid = input.read_uint32()?,
                (12, WIRE_LEN) => out.criu_work_path = read_string(input)?,
                (13, WIRE_LEN) => out.criu_image_path = read_string(input)?,
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        Ok(out)
    }

    pub fn encode(&self) -> Vec<u8> {
        encode_with(|out| {
            write_bool(out, 1, self.no_pivot_root)?;
            write_bool(out, 4, self.terminal)?;
            write_bool(out, 8, self.no_new_keyring)?;
            write_string(out, 9, &self.shim_cgroup)?;
            write_u32(out, 10, self.io_uid)?;
            write_u32(out, 11, self.io_gid)?;
            write_string(out, 12, &self.criu_work_path)?;
            write_string(out, 13, &self.criu_image_path)
        })
    }
}

impl ProcessDetails {
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut out = Self::default();
        decode_fields(PROCESS_DETAILS_NAME, bytes, |field, wire, input| {
            if (field, wire) == (1, WIRE_LEN) {
                out.exec_id = read_string(input)?;
                return Ok(true);
            }
            Ok(false)
        })?;
        Ok(out)
    }

    pub fn encode(&self) -> Vec<u8> {
        encode_with(|out| write_string(out, 1, &self.exec_id))
    }
}

/// Walks the fields of one message; `on_field` reads the fields it knows and returns
/// false for the others, which are skipped as protobuf requires.
fn decode_fields(
    message: &'static str,
    bytes: &[u8],
    mut on_field: impl FnMut(u32, u32, &mut CodedInputStream) -> protobuf::Result<bool>,
) -> Result<(), DecodeError> {
    let fail = |e: protobuf::Error| DecodeError {
        message,
        reason: e.to_string(),
    };
    let mut input = CodedInputStream::from_bytes(bytes);
    while !input.eof().map_err(fail)? {
        let tag = input.read_raw_varint32().map_err(fail)?;
        let (field, wire) = (tag >> 3, tag & 7);
        if field == 0 {
            return Err(DecodeError {
                message,
                reason: "field number 0".to_string(),
            });
        }
        if !on_field(field, wire, &mut input).map_err(fail)? {
            let wire_type = protobuf::rt::WireType::new(wire).ok_or_else(|| DecodeError {
                message,
                reason: format!("unknown wire type {wire} for field {field}"),
            })?;
            protobuf::rt::skip_field_for_tag(tag, &mut input)
                .map_err(fail)
                .map(|_| wire_type)?;
        }
    }
    Ok(())
}

fn read_string(input: &mut CodedInputStream) -> protobuf::Result<String> {
    let bytes = input.read_bytes()?;
    String::from_utf8(bytes)
        .map_err(|_| protobuf::Error::from(std::io::Error::other("string is not UTF-8")))
}

fn encode_with(write: impl FnOnce(&mut CodedOutputStream) -> protobuf::Result<()>) -> Vec<u8> {
    let mut buf = Vec::new();
    {
        let mut out = CodedOutputStream::vec(&mut buf);
        // Writing into a Vec cannot fail: it only grows.
        let _ = write(&mut out).and_then(|()| out.flush());
    }
    buf
}

fn write_string(out: &mut CodedOutputStream, field: u32, value: &str) -> protobuf::Result<()> {
    if value.is_empty() {
        return Ok(());
    }
    out.write_string(field, value)
}

fn write_bool(out: &mut CodedOutputStream, field: u32, value: bool) -> protobuf::Result<()> {
    if !value {
        return Ok(());
    }
    out.write_bool(field, value)
}

fn write_u32(out: &mut CodedOutputStream, field: u32, value: u32) -> protobuf::Result<()> {
    if value == 0 {
        return Ok(());
    }
    out.write_uint32(field, value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_options_round_trip() {
        let opts = RuntimeOptions {
            type_url: "io.containerd.rsrunc.v1.Options".into(),
            config_path: "/etc/rsrunc/crun.toml".into(),
            config_body: "BinaryName = \"crun\"\n".into(),
        };
        assert_eq!(RuntimeOptions::decode(&opts.encode()).unwrap(), opts);
    }

    #[test]
    fn legacy_create_options_round_trip() {
        let opts = LegacyCreateOptions {
            no_pivot_root: true,
            no_new_keyring: true,
            shim_cgroup: "/shims".into(),
            io_uid: 1000,
            io_gid: 1001,
            ..Default::default()
        };
        assert_eq!(LegacyCreateOptions::decode(&opts.encode()).unwrap(), opts);
    }

    #[test]
    fn unknown_fields_are_skipped() {
        let mut bytes = Vec::new();
        {
            let mut out = CodedOutputStream::vec(&mut bytes);
            out.write_uint64(7, 42).unwrap();
            out.write_string(20, "ignored").unwrap();
            out.write_string(2, "/cfg.toml").unwrap();
            out.flush().unwrap();
        }
        let opts = RuntimeOptions::decode(&bytes).unwrap();
        assert_eq!(opts.config_path, "/cfg.toml");
    }

    #[test]
    fn truncated_input_is_an_error_naming_the_message() {
        let bytes = RuntimeOptions {
            config_path: "/a/long/path.toml".into(),
            ..Default::default()
        }
        .encode();
        let err = RuntimeOptions::decode(&bytes[..bytes.len() - 3]).unwrap_err();
        assert!(err.to_string().contains(RUNTIME_OPTIONS_NAME), "{err}");
    }

    #[test]
    fn process_details_round_trip() {
        let d = ProcessDetails {
            exec_id: "exec-1".into(),
        };
        assert_eq!(ProcessDetails::decode(&d.encode()).unwrap(), d);
    }
}
