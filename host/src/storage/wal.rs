//! The write-ahead log: every accepted sample is here before the write is
//! acknowledged.
//!
//! Layout: `<data>/wal/00000000`, `00000001`, ... segments of at most
//! [`MAX_SEGMENT_SIZE`] bytes. Each record is framed as
//!
//! ```text
//! len: u32 LE | crc32c(type ‖ payload): u32 LE | type: u8 | payload
//! ```
//!
//! so a torn write (the process died mid-record) or bit rot is detected by
//! the length or the checksum. Replay stops at the first bad frame, cuts the
//! log there, and reports how many bytes were lost.
//!
//! A commit is one `write(2)` of all its records, which survives the process
//! being killed. `fsync` happens when a segment is completed and on
//! [`Wal::sync`]; like Prometheus, a machine crash can lose the last moments.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::exemplars::Exemplar;
use crate::model::{FloatHistogram, HistogramSample, Labels, Sample};

pub const MAX_SEGMENT_SIZE: u64 = 128 << 20;
/// No sane record is larger; a bigger length means a corrupt frame.
const MAX_RECORD_SIZE: usize = 64 << 20;
const FRAME_HEADER: usize = 8;

const TYPE_SERIES: u8 = 1;
const TYPE_SAMPLES: u8 = 2;
/// Added with native histograms; WALs without it read as before.
const TYPE_HISTOGRAMS: u8 = 3;
/// Added with exemplar persistence; WALs without it read as before.
const TYPE_EXEMPLARS: u8 = 4;

#[derive(Clone, Debug, PartialEq)]
pub enum Record {
    /// New series and the ids samples will refer to them by.
    Series(Vec<(u64, Labels)>),
    /// Samples by series id.
    Samples(Vec<(u64, Sample)>),
    /// Native histogram samples by series id: `id u64 | t i64 |` the
    /// histogram in [`FloatHistogram::encode`]'s form.
    Histograms(Vec<(u64, HistogramSample)>),
    /// Exemplars by series id: `id u64 | t i64 | value f64 | label count |`
    /// then each label name and value, length-prefixed.
    Exemplars(Vec<(u64, Exemplar)>),
}

#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("WAL {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> WalError + '_ {
    move |source| WalError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Where replay found the log damaged, and what was cut off.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Corruption {
    pub segment: u32,
    pub offset: u64,
    pub reason: String,
    /// Bytes removed: the rest of the damaged segment plus all later segments.
    pub bytes_lost: u64,
    pub segments_removed: u32,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplayReport {
    pub segments: u32,
    pub records: u64,
    pub bytes: u64,
    pub corruption: Option<Corruption>,
}

pub fn segment_path(dir: &Path, n: u32) -> PathBuf {
    dir.join(format!("{n:08}"))
}

/// Segment numbers present in `dir`, ascending.
pub fn list_segments(dir: &Path) -> Result<Vec<u32>, WalError> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.len() == 8
            && let Ok(n) = name.parse::<u32>()
        {
            out.push(n);
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// The newest complete checkpoint: `checkpoint.NNNNNNNN` holds the head's
/// state as of the end of segment N, so segments up to N are no longer needed.
fn latest_checkpoint(dir: &Path) -> Result<Option<(u32, PathBuf)>, WalError> {
    let mut best: Option<(u32, PathBuf)> = None;
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(n) = name.strip_prefix("checkpoint.") {
            if n.ends_with(".tmp") {
                // An interrupted checkpoint: the segments it replaces still exist.
                let p = entry.path();
                fs::remove_dir_all(&p).map_err(io_err(&p))?;
            } else if let Ok(n) = n.parse::<u32>()
                && best.as_ref().is_none_or(|(b, _)| n > *b)
            {
                best = Some((n, entry.path()));
            }
        }
    }
    Ok(best)
}

/// The newest complete checkpoint's number and directory, without touching
/// anything: for readers that follow the log while the server writes it.
pub fn newest_checkpoint(dir: &Path) -> Result<Option<(u32, PathBuf)>, WalError> {
    let mut best: Option<(u32, PathBuf)> = None;
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        let name = entry.file_name();
        let Some(n) = name
            .to_str()
            .and_then(|n| n.strip_prefix("checkpoint."))
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if best.as_ref().is_none_or(|(b, _)| n > *b) {
            best = Some((n, entry.path()));
        }
    }
    Ok(best)
}

/// Reads every intact record in order (the latest checkpoint, then the
/// segments after it), repairing a damaged tail in place.
/// `progress(done, total)` is called after each segment.
pub fn replay(
    dir: &Path,
    mut on_record: impl FnMut(Record),
    mut progress: impl FnMut(u32, u32),
) -> Result<ReplayReport, WalError> {
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    let checkpoint = latest_checkpoint(dir)?;
    let after = checkpoint.as_ref().map(|(n, _)| *n);
    let segments: Vec<u32> = list_segments(dir)?
        .into_iter()
        .filter(|n| after.is_none_or(|a| *n > a))
        .collect();
    let cp_segments = match &checkpoint {
        Some((_, p)) => list_segments(p)?,
        None => Vec::new(),
    };
    let total = (cp_segments.len() + segments.len()) as u32;
    let mut report = ReplayReport::default();
    let mut done = 0u32;
    let mut tick = |report: &ReplayReport| {
        done += 1;
        progress(done.min(total), total);
        let _ = report;
    };
    if let Some((_, cp_dir)) = &checkpoint {
        replay_segments(cp_dir, &cp_segments, &mut on_record, &mut report, &mut tick)?;
    }
    let damaged_checkpoint = report.corruption.take();
    replay_segments(dir, &segments, &mut on_record, &mut report, &mut tick)?;
    if report.corruption.is_none() {
        report.corruption = damaged_checkpoint;
    }
    progress(total, total);
    Ok(report)
}

fn replay_segments(
    dir: &Path,
    segments: &[u32],
    on_record: &mut impl FnMut(Record),
    report: &mut ReplayReport,
    tick: &mut impl FnMut(&ReplayReport),
) -> Result<(), WalError> {
    for (i, &seg) in segments.iter().enumerate() {
        let path = segment_path(dir, seg);
        let data = fs::read(&path).map_err(io_err(&path))?;
        report.segments += 1;
        let mut off = 0usize;
        let mut damage = None;
        while off < data.len() {
            match read_frame(&data[off..]) {
                Ok((record, used)) => {
                    on_record(record);
                    report.records += 1;
                    off += used;
                }
                Err(reason) => {
                    damage = Some(reason);
                    break;
                }
            }
        }
        report.bytes += off as u64;
        if let Some(reason) = damage {
            let later = &segments[i + 1..];
            let mut bytes_lost = (data.len() - off) as u64;
            for &n in later {
                let p = segment_path(dir, n);
                bytes_lost += fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
                fs::remove_file(&p).map_err(io_err(&p))?;
            }
            let f = OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(io_err(&path))?;
            f.set_len(off as u64).map_err(io_err(&path))?;
            f.sync_all().map_err(io_err(&path))?;
            report.corruption = Some(Corruption {
                segment: seg,
                offset: off as u64,
                reason,
                bytes_lost,
                segments_removed: later.len() as u32,
            });
            return Ok(());
        }
        tick(report);
    }
    Ok(())
}

/// Writes a checkpoint replacing segments `..=upto`, then deletes them and
/// any older checkpoint. `records` must describe the head completely as of
/// the end of segment `upto` (later state in it is harmless: replaying a
/// sample twice is a no-op).
pub fn write_checkpoint(
    dir: &Path,
    upto: u32,
    records: impl IntoIterator<Item = Record>,
) -> Result<(), WalError> {
    let tmp = dir.join(format!("checkpoint.{upto:08}.tmp"));
    if tmp.exists() {
        fs::remove_dir_all(&tmp).map_err(io_err(&tmp))?;
    }
    {
        let mut w = Wal::open(&tmp)?;
        for r in records {
            w.log(std::slice::from_ref(&r))?;
        }
        w.sync()?;
    }
    let done = dir.join(format!("checkpoint.{upto:08}"));
    fs::rename(&tmp, &done).map_err(io_err(&done))?;
    sync_dir(dir).map_err(io_err(dir))?;
    for n in list_segments(dir)?.into_iter().filter(|n| *n <= upto) {
        let p = segment_path(dir, n);
        fs::remove_file(&p).map_err(io_err(&p))?;
    }
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(n) = name
            .strip_prefix("checkpoint.")
            .and_then(|n| n.parse::<u32>().ok())
            && n < upto
        {
            let p = entry.path();
            fs::remove_dir_all(&p).map_err(io_err(&p))?;
        }
    }
    Ok(())
}

/// Total bytes of segments and checkpoints, for size-based retention.
pub fn disk_size(dir: &Path) -> u64 {
    fn walk(p: &Path) -> u64 {
        match fs::read_dir(p) {
            Ok(rd) => rd
                .filter_map(Result::ok)
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => walk(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum(),
            Err(_) => 0,
        }
    }
    walk(dir)
}

/// A frame as a log follower sees it: a record, or a record type this build
/// does not know (written by a newer version), which it skips.
#[derive(Debug)]
pub enum Frame {
    Record(Record),
    Unknown(u8),
}

/// Why [`next_frame`] returned no frame.
#[derive(Debug, PartialEq, Eq)]
pub enum FrameError {
    /// The buffer ends inside a frame: the writer may not be done with it.
    Incomplete,
    /// The frame is damaged.
    Corrupt(String),
}

/// Reads the frame at the start of `buf` and its length in bytes. Unlike
/// replay, a well-framed record of an unknown type is not damage.
pub fn next_frame(buf: &[u8]) -> Result<(Frame, usize), FrameError> {
    if buf.len() < FRAME_HEADER + 1 {
        return Err(FrameError::Incomplete);
    }
    let len = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    let crc = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]);
    if len == 0 || len > MAX_RECORD_SIZE {
        return Err(FrameError::Corrupt(format!("invalid record length {len}")));
    }
    if buf.len() < FRAME_HEADER + len {
        return Err(FrameError::Incomplete);
    }
    let body = &buf[FRAME_HEADER..FRAME_HEADER + len];
    if crc32c::crc32c(body) != crc {
        return Err(FrameError::Corrupt("checksum mismatch".into()));
    }
    match decode(body) {
        Some(record) => Ok((Frame::Record(record), FRAME_HEADER + len)),
        None if matches!(
            body[0],
            TYPE_SERIES | TYPE_SAMPLES | TYPE_HISTOGRAMS | TYPE_EXEMPLARS
        ) =>
        {
            Err(FrameError::Corrupt("undecodable record".into()))
        }
        None => Ok((Frame::Unknown(body[0]), FRAME_HEADER + len)),
    }
}

fn read_frame(buf: &[u8]) -> Result<(Record, usize), String> {
    if buf.len() < FRAME_HEADER + 1 {
        return Err(format!("torn record header ({} bytes)", buf.len()));
    }
    let len = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    let crc = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]);
    if len == 0 || len > MAX_RECORD_SIZE {
        return Err(format!("invalid record length {len}"));
    }
    if buf.len() < FRAME_HEADER + len {
        return Err(format!(
            "torn record: {} of {len} bytes present",
            buf.len() - FRAME_HEADER
        ));
    }
    let body = &buf[FRAME_HEADER..FRAME_HEADER + len];
    if crc32c::crc32c(body) != crc {
        return Err("checksum mismatch".into());
    }
    let record = decode(body).ok_or_else(|| "undecodable record".to_owned())?;
    Ok((record, FRAME_HEADER + len))
}

fn put_uvarint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn uvarint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let (&b, rest) = self.0.split_first()?;
            self.0 = rest;
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Some(v);
            }
        }
        None
    }

    fn u64(&mut self) -> Option<u64> {
        let (head, rest) = self.0.split_first_chunk::<8>()?;
        self.0 = rest;
        Some(u64::from_le_bytes(*head))
    }

    fn labels(&mut self) -> Option<Labels> {
        let count = self.uvarint()?;
        let mut pairs = Vec::new();
        for _ in 0..count {
            let name = self.str()?.to_owned();
            let value = self.str()?.to_owned();
            pairs.push((name, value));
        }
        Labels::from_pairs(pairs).ok()
    }

    fn str(&mut self) -> Option<&str> {
        let len = usize::try_from(self.uvarint()?).ok()?;
        if self.0.len() < len {
            return None;
        }
        let (s, rest) = self.0.split_at(len);
        self.0 = rest;
        std::str::from_utf8(s).ok()
    }
}

fn put_labels(buf: &mut Vec<u8>, labels: &Labels) {
    put_uvarint(buf, labels.len() as u64);
    for l in labels.iter() {
        put_uvarint(buf, l.name.len() as u64);
        buf.extend_from_slice(l.name.as_bytes());
        put_uvarint(buf, l.value.len() as u64);
        buf.extend_from_slice(l.value.as_bytes());
    }
}

pub fn encode(record: &Record, buf: &mut Vec<u8>) {
    let start = buf.len();
    buf.extend_from_slice(&[0; FRAME_HEADER]);
    match record {
        Record::Series(series) => {
            buf.push(TYPE_SERIES);
            put_uvarint(buf, series.len() as u64);
            for (id, labels) in series {
                buf.extend_from_slice(&id.to_le_bytes());
                put_labels(buf, labels);
            }
        }
        Record::Samples(samples) => {
            buf.push(TYPE_SAMPLES);
            put_uvarint(buf, samples.len() as u64);
            for (id, s) in samples {
                buf.extend_from_slice(&id.to_le_bytes());
                buf.extend_from_slice(&s.t.to_le_bytes());
                buf.extend_from_slice(&s.v.to_bits().to_le_bytes());
            }
        }
        Record::Histograms(samples) => {
            buf.push(TYPE_HISTOGRAMS);
            put_uvarint(buf, samples.len() as u64);
            for (id, s) in samples {
                buf.extend_from_slice(&id.to_le_bytes());
                buf.extend_from_slice(&s.t.to_le_bytes());
                s.h.encode(buf);
            }
        }
        Record::Exemplars(exemplars) => {
            buf.push(TYPE_EXEMPLARS);
            put_uvarint(buf, exemplars.len() as u64);
            for (id, e) in exemplars {
                buf.extend_from_slice(&id.to_le_bytes());
                buf.extend_from_slice(&e.timestamp_ms.to_le_bytes());
                buf.extend_from_slice(&e.value.to_bits().to_le_bytes());
                put_labels(buf, &e.labels);
            }
        }
    }
    let body = &buf[start + FRAME_HEADER..];
    let len = (body.len() as u32).to_le_bytes();
    let crc = crc32c::crc32c(body).to_le_bytes();
    buf[start..start + 4].copy_from_slice(&len);
    buf[start + 4..start + 8].copy_from_slice(&crc);
}

fn decode(body: &[u8]) -> Option<Record> {
    let (&kind, rest) = body.split_first()?;
    let mut r = Reader(rest);
    let n = usize::try_from(r.uvarint()?).ok()?;
    let record = match kind {
        TYPE_SERIES => {
            let mut series = Vec::with_capacity(n.min(1 << 16));
            for _ in 0..n {
                let id = r.u64()?;
                series.push((id, r.labels()?));
            }
            Record::Series(series)
        }
        TYPE_SAMPLES => {
            let mut samples = Vec::with_capacity(n.min(1 << 16));
            for _ in 0..n {
                let id = r.u64()?;
                let t = r.u64()? as i64;
                let v = f64::from_bits(r.u64()?);
                samples.push((id, Sample { t, v }));
            }
            Record::Samples(samples)
        }
        TYPE_HISTOGRAMS => {
            let mut samples = Vec::with_capacity(n.min(1 << 12));
            for _ in 0..n {
                let id = r.u64()?;
                let t = r.u64()? as i64;
                let (h, rest) = FloatHistogram::decode(r.0)?;
                r.0 = rest;
                samples.push((
                    id,
                    HistogramSample {
                        t,
                        h: std::sync::Arc::new(h),
                    },
                ));
            }
            Record::Histograms(samples)
        }
        TYPE_EXEMPLARS => {
            let mut exemplars = Vec::with_capacity(n.min(1 << 16));
            for _ in 0..n {
                let id = r.u64()?;
                let timestamp_ms = r.u64()? as i64;
                let value = f64::from_bits(r.u64()?);
                let labels = r.labels()?;
                exemplars.push((
                    id,
                    Exemplar {
                        labels,
                        value,
                        timestamp_ms,
                    },
                ));
            }
            Record::Exemplars(exemplars)
        }
        _ => return None,
    };
    r.0.is_empty().then_some(record)
}

/// Appends records to the newest segment.
pub struct Wal {
    dir: PathBuf,
    segment: u32,
    file: File,
    size: u64,
    buf: Vec<u8>,
}

impl Wal {
    /// Opens the log for writing in a fresh segment after the existing ones.
    /// Call [`replay`] first: it repairs a damaged tail.
    pub fn open(dir: &Path) -> Result<Wal, WalError> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let next = list_segments(dir)?.last().map_or(0, |n| n + 1);
        let (file, path) = create_segment(dir, next)?;
        sync_dir(dir).map_err(io_err(&path))?;
        Ok(Wal {
            dir: dir.to_owned(),
            segment: next,
            file,
            size: 0,
            buf: Vec::new(),
        })
    }

    /// Writes the records of one commit with a single `write(2)`.
    pub fn log(&mut self, records: &[Record]) -> Result<(), WalError> {
        self.buf.clear();
        for r in records {
            encode(r, &mut self.buf);
        }
        if self.size > 0 && self.size + self.buf.len() as u64 > MAX_SEGMENT_SIZE {
            self.next_segment()?;
        }
        let path = segment_path(&self.dir, self.segment);
        self.file.write_all(&self.buf).map_err(io_err(&path))?;
        self.size += self.buf.len() as u64;
        Ok(())
    }

    /// Flushes the current segment to stable storage.
    pub fn sync(&mut self) -> Result<(), WalError> {
        let path = segment_path(&self.dir, self.segment);
        self.file.sync_data().map_err(io_err(&path))
    }

    fn next_segment(&mut self) -> Result<(), WalError> {
        self.sync()?;
        let (file, _) = create_segment(&self.dir, self.segment + 1)?;
        self.segment += 1;
        self.file = file;
        self.size = 0;
        Ok(())
    }

    pub fn current_segment(&self) -> u32 {
        self.segment
    }

    /// Closes the current segment and starts the next; returns the number of
    /// the closed one, which a checkpoint can then replace.
    pub fn rotate(&mut self) -> Result<u32, WalError> {
        let closed = self.segment;
        self.next_segment()?;
        Ok(closed)
    }
}

fn create_segment(dir: &Path, n: u32) -> Result<(File, PathBuf), WalError> {
    let path = segment_path(dir, n);
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(io_err(&path))?;
    Ok((file, path))
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::sample::stale_nan;

    fn labels(name: &str) -> Labels {
        Labels::from_pairs([("__name__", name), ("job", "j")]).unwrap()
    }

    fn read_all(dir: &Path) -> (Vec<Record>, ReplayReport) {
        let mut out = Vec::new();
        let report = replay(dir, |r| out.push(r), |_, _| {}).unwrap();
        (out, report)
    }

    #[test]
    fn round_trip_is_bit_exact() {
        let tmp = tempfile::tempdir().unwrap();
        let records = vec![
            Record::Series(vec![(7, labels("up")), (u64::MAX, labels("x"))]),
            Record::Samples(vec![
                (7, Sample { t: -5, v: 1.5 }),
                (
                    7,
                    Sample {
                        t: 10,
                        v: stale_nan(),
                    },
                ),
                (
                    u64::MAX,
                    Sample {
                        t: i64::MAX,
                        v: f64::NAN,
                    },
                ),
            ]),
            Record::Exemplars(vec![
                (
                    7,
                    Exemplar {
                        labels: Labels::from_pairs([("trace_id", "abc"), ("span_id", "ü")])
                            .unwrap(),
                        value: -0.25,
                        timestamp_ms: -3,
                    },
                ),
                (
                    u64::MAX,
                    Exemplar {
                        labels: Labels::default(),
                        value: 1e300,
                        timestamp_ms: i64::MAX,
                    },
                ),
            ]),
        ];
        let mut wal = Wal::open(tmp.path()).unwrap();
        wal.log(&records).unwrap();
        drop(wal);
        let (got, report) = read_all(tmp.path());
        assert_eq!(report.corruption, None);
        assert_eq!(got.len(), 3);
        assert_eq!(got[0], records[0]);
        assert_eq!(got[2], records[2]);
        let Record::Samples(s) = &got[1] else {
            panic!()
        };
        assert_eq!(s[1].1.v.to_bits(), stale_nan().to_bits());
        assert_eq!(s[2].1.v.to_bits(), f64::NAN.to_bits());
    }

    #[test]
    fn torn_tail_is_cut_and_reported() {
        let tmp = tempfile::tempdir().unwrap();
        let mut wal = Wal::open(tmp.path()).unwrap();
        for i in 0..10 {
            wal.log(&[Record::Samples(vec![(1, Sample { t: i, v: 0.0 })])])
                .unwrap();
        }
        drop(wal);
        let seg = segment_path(tmp.path(), 0);
        let len = fs::metadata(&seg).unwrap().len();
        // Cut the last record in half.
        let f = OpenOptions::new().write(true).open(&seg).unwrap();
        f.set_len(len - 10).unwrap();
        drop(f);
        let (got, report) = read_all(tmp.path());
        assert_eq!(got.len(), 9);
        let c = report.corruption.unwrap();
        assert!(c.reason.contains("torn"), "{c:?}");
        assert_eq!(c.bytes_lost, (len - 10) - c.offset);
        // The repaired log replays cleanly and accepts new writes.
        let (got, report) = read_all(tmp.path());
        assert_eq!((got.len(), report.corruption), (9, None));
    }

    #[test]
    fn corruption_drops_later_segments() {
        let tmp = tempfile::tempdir().unwrap();
        for round in 0..3 {
            let mut wal = Wal::open(tmp.path()).unwrap();
            wal.log(&[Record::Samples(vec![(1, Sample { t: round, v: 0.0 })])])
                .unwrap();
        }
        // Flip a payload byte in the middle segment.
        let seg = segment_path(tmp.path(), 1);
        let mut data = fs::read(&seg).unwrap();
        let last = data.len() - 1;
        data[last] ^= 0xff;
        fs::write(&seg, data).unwrap();
        let (got, report) = read_all(tmp.path());
        assert_eq!(got.len(), 1);
        let c = report.corruption.unwrap();
        assert_eq!((c.segment, c.offset, c.segments_removed), (1, 0, 1));
        assert!(c.reason.contains("checksum"));
        assert_eq!(list_segments(tmp.path()).unwrap(), vec![0, 1]);
    }
}
