//! The `dns` import: A/AAAA through the system resolver, SRV through a small
//! UDP client of our own (the system resolver API has no SRV), both only for
//! names on the plugin's allow-list.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::bindings::dns;
use super::state::{State, host_allowed};

/// Longest a single DNS exchange may take, within the call's deadline.
const DNS_TIMEOUT: Duration = Duration::from_secs(5);
const TYPE_SRV: u16 = 33;

impl State {
    fn check_name(&mut self, name: &str) -> Result<(), String> {
        let url = reqwest::Url::parse(&format!("dns://{name}/"))
            .map_err(|e| format!("invalid name {name:?}: {e}"))?;
        // The allow-list is written for HTTP hosts; any port entry allows
        // the name for DNS.
        let allowed = self.settings.allow_hosts.iter().any(|entry| {
            let host = match entry.rsplit_once(':') {
                Some((h, p)) if p.parse::<u16>().is_ok() && !h.contains(':') => h,
                _ => entry.as_str(),
            };
            host_allowed(&[host.to_owned()], &url)
        });
        if !allowed {
            tracing::warn!(plugin = %self.settings.name, name, "Plugin asked to resolve a name that is not on its allow-list");
            self.denied_host = Some(name.to_owned());
            return Err("lookup refused by the host".into());
        }
        Ok(())
    }

    fn time_left(&self) -> Result<Duration, String> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err("no time left for the lookup".into());
        }
        Ok(left.min(DNS_TIMEOUT))
    }
}

impl dns::Host for State {
    async fn lookup_ip(&mut self, name: String) -> Result<Vec<String>, String> {
        self.check_name(&name)?;
        let left = self.time_left()?;
        let lookup = tokio::net::lookup_host((name.as_str(), 0));
        let addrs = tokio::time::timeout(left, lookup)
            .await
            .map_err(|_| format!("looking up {name}: timed out"))?
            .map_err(|e| format!("looking up {name}: {e}"))?;
        let mut out: Vec<String> = addrs.map(|a| a.ip().to_string()).collect();
        out.sort();
        out.dedup();
        Ok(out)
    }

    async fn lookup_srv(&mut self, name: String) -> Result<Vec<dns::Srv>, String> {
        self.check_name(&name)?;
        let left = self.time_left()?;
        let server = match &self.settings.dns_server {
            Some(s) => s
                .parse::<SocketAddr>()
                .map_err(|e| format!("dns_server {s:?}: {e}"))?,
            None => system_nameserver()?,
        };
        tokio::time::timeout(left, query_srv(server, &name))
            .await
            .map_err(|_| format!("SRV lookup of {name}: timed out"))?
    }
}

/// The first `nameserver` of `/etc/resolv.conf`.
fn system_nameserver() -> Result<SocketAddr, String> {
    let text = std::fs::read_to_string("/etc/resolv.conf")
        .map_err(|e| format!("reading /etc/resolv.conf: {e}"))?;
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|rest| rest.trim().parse::<std::net::IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .next()
        .ok_or_else(|| "no nameserver in /etc/resolv.conf".to_owned())
}

fn encode_query(id: u16, name: &str, qtype: u16) -> Result<Vec<u8>, String> {
    let mut q = Vec::with_capacity(name.len() + 18);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&0x0100u16.to_be_bytes()); // recursion desired
    q.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.trim_end_matches('.').split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(format!("invalid DNS name {name:?}"));
        }
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&1u16.to_be_bytes()); // IN
    Ok(q)
}

fn u16_at(msg: &[u8], pos: usize) -> Result<u16, String> {
    msg.get(pos..pos + 2)
        .map(|b| u16::from_be_bytes([b[0], b[1]]))
        .ok_or_else(|| "truncated DNS message".to_owned())
}

/// Reads a (possibly compressed) name at `pos`; returns it and the position
/// after it.
fn read_name(msg: &[u8], mut pos: usize) -> Result<(String, usize), String> {
    let mut labels: Vec<String> = Vec::new();
    let mut end = None;
    for _ in 0..128 {
        let len = *msg.get(pos).ok_or("truncated DNS name")? as usize;
        if len == 0 {
            return Ok((labels.join("."), end.unwrap_or(pos + 1)));
        }
        if len & 0xC0 == 0xC0 {
            let low = *msg.get(pos + 1).ok_or("truncated DNS name")? as usize;
            end.get_or_insert(pos + 2);
            pos = ((len & 0x3F) << 8) | low;
            continue;
        }
        let label = msg
            .get(pos + 1..pos + 1 + len)
            .ok_or("truncated DNS label")?;
        labels.push(String::from_utf8_lossy(label).into_owned());
        pos += 1 + len;
    }
    Err("DNS name compression loop".into())
}

/// Parses the SRV answers of a response to query `id`.
fn parse_srv(msg: &[u8], id: u16) -> Result<Vec<dns::Srv>, String> {
    if u16_at(msg, 0)? != id {
        return Err("DNS response for another query".into());
    }
    let flags = u16_at(msg, 2)?;
    if flags & 0x0200 != 0 {
        return Err("DNS response truncated (TCP fallback is not supported)".into());
    }
    match flags & 0x000F {
        0 => {}
        3 => return Ok(Vec::new()), // NXDOMAIN
        rcode => return Err(format!("DNS server answered with rcode {rcode}")),
    }
    let questions = u16_at(msg, 4)?;
    let answers = u16_at(msg, 6)?;
    let mut pos = 12;
    for _ in 0..questions {
        pos = read_name(msg, pos)?.1 + 4;
    }
    let mut out = Vec::new();
    for _ in 0..answers {
        let (_, after) = read_name(msg, pos)?;
        let rtype = u16_at(msg, after)?;
        let rdlen = u16_at(msg, after + 8)? as usize;
        let rdata = after + 10;
        if msg.len() < rdata + rdlen {
            return Err("truncated DNS record".into());
        }
        if rtype == TYPE_SRV {
            let (target, _) = read_name(msg, rdata + 6)?;
            out.push(dns::Srv {
                priority: u16_at(msg, rdata)?,
                weight: u16_at(msg, rdata + 2)?,
                port: u16_at(msg, rdata + 4)?,
                target,
            });
        }
        pos = rdata + rdlen;
    }
    Ok(out)
}

async fn query_srv(server: SocketAddr, name: &str) -> Result<Vec<dns::Srv>, String> {
    let id = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos())
        & 0xFFFF) as u16;
    let query = encode_query(id, name, TYPE_SRV)?;
    let bind: SocketAddr = if server.is_ipv4() {
        "0.0.0.0:0".parse().map_err(|_| "bind address")?
    } else {
        "[::]:0".parse().map_err(|_| "bind address")?
    };
    let socket = tokio::net::UdpSocket::bind(bind)
        .await
        .map_err(|e| format!("DNS socket: {e}"))?;
    socket
        .send_to(&query, server)
        .await
        .map_err(|e| format!("sending to {server}: {e}"))?;
    let mut buf = vec![0u8; 4096];
    loop {
        let (n, from) = socket
            .recv_from(&mut buf)
            .await
            .map_err(|e| format!("receiving from {server}: {e}"))?;
        if from != server || n < 2 || u16::from_be_bytes([buf[0], buf[1]]) != id {
            continue; // not our answer
        }
        return parse_srv(&buf[..n], id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_compressed_srv_answers() {
        let id = 0x1234;
        let mut msg = encode_query(id, "_web._tcp.example.com", TYPE_SRV).unwrap();
        msg[2] = 0x81;
        msg[3] = 0x80;
        msg[7] = 1; // one answer
        // name: pointer to the question's name at 12
        msg.extend_from_slice(&[0xC0, 12]);
        msg.extend_from_slice(&TYPE_SRV.to_be_bytes());
        msg.extend_from_slice(&[0, 1, 0, 0, 0, 60]);
        // rdata: priority 1, weight 5, port 8080, target "a" + pointer to
        // "example.com" (offset of "example" in the question)
        let target_suffix = 12 + 1 + 4 + 1 + 4;
        let rdata = [0, 1, 0, 5, 0x1F, 0x90, 1, b'a', 0xC0, target_suffix as u8];
        msg.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        msg.extend_from_slice(&rdata);
        let srv = parse_srv(&msg, id).unwrap();
        assert_eq!(srv.len(), 1);
        assert_eq!(srv[0].port, 8080);
        assert_eq!(srv[0].priority, 1);
        assert_eq!(srv[0].weight, 5);
        assert_eq!(srv[0].target, "a.example.com");
        assert!(parse_srv(&msg, id + 1).is_err());
        assert!(parse_srv(&msg[..msg.len() - 3], id).is_err());
    }

    #[test]
    fn pointer_loops_are_errors() {
        let msg = [0u8; 12]
            .iter()
            .copied()
            .chain([0xC0, 12])
            .collect::<Vec<u8>>();
        assert!(read_name(&msg, 12).is_err());
    }
}
