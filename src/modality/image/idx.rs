//! The IDX format of MNIST (LeCun et al.): a big-endian header giving the element type and the
//! dimensions, then the raw elements. Files may be gzip-compressed (`.gz`).

use std::io::Read;
use std::path::Path;

use crate::{Error, Result};

/// Type code of unsigned bytes, the only element type MNIST uses.
const U8: u8 = 0x08;
/// Largest file accepted after decompression (MNIST train images are 47 MB).
const MAX_BYTES: u64 = 1 << 30;

/// An IDX array of unsigned bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxArray {
    /// Dimensions, outermost first (`[n, rows, cols]` for images, `[n]` for labels).
    pub dims: Vec<usize>,
    /// Elements in row-major order.
    pub data: Vec<u8>,
}

/// Reads an IDX file of unsigned bytes, gunzipping it when the name ends in `.gz`.
pub fn read_idx(path: &Path) -> Result<IdxArray> {
    let file = std::fs::File::open(path).map_err(|e| Error::io("opening", path, e))?;
    let mut bytes = Vec::new();
    let gz = path.extension().is_some_and(|e| e == "gz");
    let read = if gz {
        flate2::read::GzDecoder::new(file)
            .take(MAX_BYTES)
            .read_to_end(&mut bytes)
    } else {
        file.take(MAX_BYTES).read_to_end(&mut bytes)
    };
    read.map_err(|e| {
        idx_err(
            path,
            format!(
                "cannot read{}: {e}",
                if gz { " (bad gzip data)" } else { "" }
            ),
        )
    })?;
    parse_idx(&bytes).map_err(|m| idx_err(path, m))
}

/// Parses IDX bytes; the error says what is malformed.
pub fn parse_idx(bytes: &[u8]) -> std::result::Result<IdxArray, String> {
    if bytes.len() < 4 || bytes[0] != 0 || bytes[1] != 0 {
        return Err("not an IDX file (the magic number must start with two zero bytes)".into());
    }
    if bytes[2] != U8 {
        return Err(format!(
            "element type 0x{:02x} is not supported (only unsigned bytes, 0x08)",
            bytes[2]
        ));
    }
    let rank = bytes[3] as usize;
    if rank == 0 || rank > 4 {
        return Err(format!("rank {rank} is not supported (1 to 4 dimensions)"));
    }
    let header = 4 + 4 * rank;
    if bytes.len() < header {
        return Err(format!(
            "truncated header: {} bytes, need {header}",
            bytes.len()
        ));
    }
    let dims: Vec<usize> = bytes[4..header]
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize)
        .collect();
    let expected = dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
    match expected {
        Some(n) if n == bytes.len() - header => Ok(IdxArray {
            dims,
            data: bytes[header..].to_vec(),
        }),
        Some(n) => Err(format!(
            "dimensions {dims:?} need {n} bytes of data but the file has {}",
            bytes.len() - header
        )),
        None => Err(format!("dimensions {dims:?} overflow")),
    }
}

fn idx_err(path: &Path, message: String) -> Error {
    Error::Data {
        path: path.to_path_buf(),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idx(dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut b = vec![0, 0, U8, dims.len() as u8];
        for d in dims {
            b.extend(d.to_be_bytes());
        }
        b.extend(data);
        b
    }

    #[test]
    fn parses_images_and_labels() {
        let images = parse_idx(&idx(&[2, 2, 3], &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12])).unwrap();
        assert_eq!(images.dims, vec![2, 2, 3]);
        assert_eq!(images.data[11], 12);
        let labels = parse_idx(&idx(&[3], &[7, 0, 9])).unwrap();
        assert_eq!((labels.dims, labels.data), (vec![3], vec![7, 0, 9]));
    }

    #[test]
    fn malformed_files_say_what_is_wrong() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"PNG\x0d".to_vec(), "not an IDX"),
            (vec![0, 0], "not an IDX"),
            (vec![0, 0, 0x0d, 1, 0, 0, 0, 1, 0, 0, 0, 0], "element type"),
            (vec![0, 0, U8, 9], "rank"),
            (vec![0, 0, U8, 3, 0, 0], "truncated header"),
            (idx(&[2, 28, 28], &[0; 100]), "need 1568 bytes"),
            (idx(&[u32::MAX, u32::MAX, u32::MAX], &[]), "overflow"),
        ];
        for (bytes, needle) in cases {
            let err = parse_idx(&bytes).unwrap_err();
            assert!(err.contains(needle), "{err:?} should mention {needle:?}");
        }
    }

    #[test]
    fn reads_gzip_files_and_reports_bad_ones() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("labels.idx1.gz");
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(&idx(&[2], &[4, 2])).unwrap();
        std::fs::write(&good, enc.finish().unwrap()).unwrap();
        assert_eq!(read_idx(&good).unwrap().data, vec![4, 2]);
        let bad = dir.path().join("bad.gz");
        std::fs::write(&bad, b"definitely not gzip").unwrap();
        let err = read_idx(&bad).unwrap_err().to_string();
        assert!(err.contains("bad.gz") && err.contains("gzip"), "{err}");
    }

    #[test]
    fn reads_the_shipped_mnist_test_labels() {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("datasets/mnist/t10k-labels-idx1-ubyte.gz");
        let labels = read_idx(&path).unwrap();
        assert_eq!(labels.dims, vec![10_000]);
        assert_eq!(labels.data.iter().filter(|&&l| l == 1).count(), 1135);
    }
}
