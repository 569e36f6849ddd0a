//! Value parsers shared by URLs and connection strings.

use std::net::Ipv6Addr;
use std::path::PathBuf;
use std::time::Duration;

use super::DatabaseUrlError;
use super::redact::Redactor;

/// Parses a connection string `Server` value: one host name, IPv4 address, or IPv6
/// address with or without brackets.
pub(super) fn parse_server(
    value: &str,
    key: &str,
    redactor: &Redactor,
) -> Result<String, DatabaseUrlError> {
    let value = value.trim();
    if value.is_empty() {
        let message = "the host is empty; set it to a host name or IP address";
        return Err(redactor.error(Some(key), message));
    }
    if value.contains(',') {
        let message = format!(
            "several hosts are listed{}; Ally connects to a single server, so set one host",
            redactor.got(value)
        );
        return Err(redactor.error(Some(key), message));
    }
    if value.starts_with('/') || value.starts_with("./") {
        let message = format!(
            "Unix socket paths are not supported{}; set a host name or IP address \
             and the TCP port",
            redactor.got(value)
        );
        return Err(redactor.error(Some(key), message));
    }
    if let Some(bracketed) = value.strip_prefix('[') {
        let Some(inner) = bracketed.strip_suffix(']') else {
            let message = format!(
                "a bracketed IPv6 address must end with `]` and cannot carry a port{}; \
                 set the port with the Port key",
                redactor.got(value)
            );
            return Err(redactor.error(Some(key), message));
        };
        return parse_ipv6(inner, key, redactor);
    }
    if value.contains(':') {
        if value.parse::<Ipv6Addr>().is_ok() {
            return Ok(value.to_owned());
        }
        let message = format!(
            "not a valid host{}; set the port with the Port key, \
             and write IPv6 addresses as ::1 or [::1]",
            redactor.got(value)
        );
        return Err(redactor.error(Some(key), message));
    }
    parse_host_name(value, key, redactor)
}

/// Checks a host name or IPv4 address: ASCII letters, digits, `-`, `.` and `_`.
pub(super) fn parse_host_name(
    host: &str,
    key: &str,
    redactor: &Redactor,
) -> Result<String, DatabaseUrlError> {
    if host.is_empty() {
        let message = "the host is empty; set it to a host name or IP address";
        return Err(redactor.error(Some(key), message));
    }
    let invalid = host
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_')));
    if let Some(invalid) = invalid {
        let mut message = format!(
            "not a valid host name{}: it contains {}",
            redactor.got(host),
            redactor
                .quote(&invalid.to_string())
                .unwrap_or_else(|| "a character that is not allowed".to_owned())
        );
        if !invalid.is_ascii() {
            message.push_str("; write international names in their xn-- (Punycode) form");
        }
        return Err(redactor.error(Some(key), message));
    }
    Ok(host.to_owned())
}

/// Checks an IPv6 address given without brackets and returns it unchanged.
///
/// NOTE: zone indices such as `fe80::1%eth0` are rejected because `Ipv6Addr` cannot hold them.
pub(super) fn parse_ipv6(
    address: &str,
    key: &str,
    redactor: &Redactor,
) -> Result<String, DatabaseUrlError> {
    if address.parse::<Ipv6Addr>().is_err() {
        let message = format!(
            "not a valid IPv6 address{}; zone indices such as %eth0 are not supported",
            redactor.got(address)
        );
        return Err(redactor.error(Some(key), message));
    }
    Ok(address.to_owned())
}

pub(super) fn parse_port(
    value: &str,
    key: &str,
    redactor: &Redactor,
) -> Result<u16, DatabaseUrlError> {
    let digits = value.trim();
    let port = Some(digits)
        .filter(|digits| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|digits| digits.parse::<u16>().ok())
        .filter(|&port| port != 0);
    port.ok_or_else(|| {
        let message = format!(
            "port must be a number from 1 to 65535{}",
            redactor.got(value)
        );
        redactor.error(Some(key), message)
    })
}

/// Parses whole seconds from 0 to `u32::MAX`, the range of MySqlConnector's
/// `ConnectionTimeout`.
pub(super) fn parse_timeout(
    value: &str,
    key: &str,
    redactor: &Redactor,
) -> Result<Duration, DatabaseUrlError> {
    let digits = value.trim();
    let seconds = Some(digits)
        .filter(|digits| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|digits| digits.parse::<u32>().ok());
    match seconds {
        Some(seconds) => Ok(Duration::from_secs(u64::from(seconds))),
        None => {
            let message = format!(
                "the timeout must be a whole number of seconds from 0 to {}{}",
                u32::MAX,
                redactor.got(value)
            );
            Err(redactor.error(Some(key), message))
        }
    }
}

pub(super) fn parse_file_path(
    value: &str,
    key: &str,
    redactor: &Redactor,
) -> Result<PathBuf, DatabaseUrlError> {
    if value.trim().is_empty() {
        let message = "the file path is empty; set it to a PEM file or remove the key";
        return Err(redactor.error(Some(key), message));
    }
    Ok(PathBuf::from(value))
}
