//! Checks on a target's address before it can be scraped.

/// Why a target address cannot be used.
pub fn check_address(address: &str) -> Result<(), String> {
    if address.is_empty() {
        return Err("no address".into());
    }
    if address.contains('/') {
        return Err(format!(
            "{address:?} is not a valid hostname (targets are host:port; set the scheme with `scheme` and the path with `metrics_path`)"
        ));
    }
    Ok(())
}
