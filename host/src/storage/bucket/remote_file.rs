//! A Parquet file in the bucket as the synchronous Parquet reader sees it:
//! byte ranges served from the chunk cache, fetched with ranged GETs on a
//! miss. The reader asks only for the footer, the page index and the pages
//! its row-group and page pruning kept, so that is all that is fetched.

use std::io::Read;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use parquet::errors::ParquetError;
use parquet::file::reader::{ChunkReader, Length};

use super::cache::{CHUNK_BYTES, ChunkCache};
use super::client::{Bucket, BucketError};

#[derive(Clone)]
pub struct RemoteFile {
    pub bucket: Arc<Bucket>,
    pub cache: Arc<ChunkCache>,
    pub ulid: String,
    pub file: String,
    pub size: u64,
}

impl RemoteFile {
    fn chunk(&self, index: u64) -> Result<Bytes, BucketError> {
        let start = index * CHUNK_BYTES;
        let end = (start + CHUNK_BYTES).min(self.size);
        let key = format!("{}/{}.{index}", self.ulid, self.file);
        self.cache.get_or_fetch(&key, || {
            self.bucket.get_range(&self.ulid, &self.file, start..end)
        })
    }

    fn read_range(&self, start: u64, len: u64) -> Result<Bytes, BucketError> {
        let end = (start + len).min(self.size);
        if start >= end {
            return Ok(Bytes::new());
        }
        let first = start / CHUNK_BYTES;
        let last = (end - 1) / CHUNK_BYTES;
        if first == last {
            let chunk = self.chunk(first)?;
            let from = (start - first * CHUNK_BYTES) as usize;
            let to = (end - first * CHUNK_BYTES) as usize;
            return Ok(chunk.slice(from..to.min(chunk.len())));
        }
        let mut out = BytesMut::with_capacity((end - start) as usize);
        for index in first..=last {
            let chunk = self.chunk(index)?;
            let base = index * CHUNK_BYTES;
            let from = start.saturating_sub(base) as usize;
            let to = ((end - base) as usize).min(chunk.len());
            if from < to {
                out.extend_from_slice(&chunk[from..to]);
            }
        }
        Ok(out.freeze())
    }
}

fn parquet_err(e: BucketError) -> ParquetError {
    ParquetError::External(Box::new(e))
}

impl Length for RemoteFile {
    fn len(&self) -> u64 {
        self.size
    }
}

impl ChunkReader for RemoteFile {
    type T = RemoteRead;

    fn get_read(&self, start: u64) -> parquet::errors::Result<RemoteRead> {
        Ok(RemoteRead {
            file: self.clone(),
            pos: start,
        })
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        let bytes = self.read_range(start, length as u64).map_err(parquet_err)?;
        if bytes.len() != length {
            return Err(ParquetError::EOF(format!(
                "{}/{}: wanted {length} bytes at {start}, the file has {}",
                self.ulid, self.file, self.size
            )));
        }
        Ok(bytes)
    }
}

/// A sequential reader over a remote file, one cached chunk at a time.
pub struct RemoteRead {
    file: RemoteFile,
    pos: u64,
}

impl Read for RemoteRead {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.pos >= self.file.size || buf.is_empty() {
            return Ok(0);
        }
        let to_chunk_end = CHUNK_BYTES - self.pos % CHUNK_BYTES;
        let want = (buf.len() as u64).min(to_chunk_end);
        let bytes = self
            .file
            .read_range(self.pos, want)
            .map_err(std::io::Error::other)?;
        buf[..bytes.len()].copy_from_slice(&bytes);
        self.pos += bytes.len() as u64;
        Ok(bytes.len())
    }
}
