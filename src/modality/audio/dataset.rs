//! Labelled audio datasets: a folder of WAV files named `<label>_<anything>.wav` (the Free
//! Spoken Digit Dataset's `<digit>_<speaker>_<take>.wav`), or a folder with one sub-folder of
//! WAV files per class. Clips are read at the model's rate and prepared by the codec.

use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::codec::{prepare, AudioFormat};
use super::mel::{log_mel_picture, mel_shape};
use super::wav::read_wav;
use crate::modality::judge::Pictures;
use crate::modality::{sorted_entries, Split};
use crate::{Error, Result};

/// Prepared clips (mono, peak-normalised, cut to the format's length) and their labels.
#[derive(Debug, Clone)]
pub struct AudioDataset {
    /// Class names; a label is an index into this list.
    pub classes: Vec<String>,
    /// The waveforms.
    pub clips: Vec<Vec<f32>>,
    /// The label of each clip.
    pub labels: Vec<usize>,
    /// The voice (speaker) of each clip, from `<label>_<voice>_<take>.wav` names; `None` for
    /// other names. Empty for clips that come from elsewhere (generated, say).
    pub voices: Vec<Option<String>>,
}

fn is_wav(p: &Path) -> bool {
    p.is_file()
        && p.extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| e.eq_ignore_ascii_case("wav"))
}

impl AudioDataset {
    /// Loads `split` of the dataset at `path`. Flat folders take their labels from the file
    /// names; files named `<label>_<speaker>_<take>.wav` with takes 0-4 are the test split
    /// (FSDD's convention), otherwise every 10th file of a class is. Folders of sub-folders
    /// take labels from the sub-folder names and hold out every 10th file.
    pub fn load(path: &Path, split: Split, format: &AudioFormat) -> Result<Self> {
        format.validate()?;
        let files = sorted_entries(path, is_wav)?;
        let labelled = if files.is_empty() {
            from_class_folders(path)?
        } else {
            from_file_names(path, files)?
        };
        let mut seen = std::collections::HashMap::new();
        let chosen: Vec<(PathBuf, usize)> = labelled
            .files
            .into_iter()
            .filter(|(file, label)| {
                let index = seen.entry(*label).or_insert(0usize);
                *index += 1;
                let is_test = match fsdd_name(file) {
                    Some((_, take)) => take < 5,
                    None => *index % 10 == 0,
                };
                is_test == (split == Split::Test)
            })
            .collect();
        if chosen.is_empty() {
            return Err(Error::Data {
                path: path.to_path_buf(),
                message: format!("no WAV files for the {split:?} split"),
            });
        }
        // Read in parallel, then report the first bad file in name order (rayon's own
        // `collect::<Result<_>>` would report whichever failed first in time).
        let clips = chosen
            .par_iter()
            .map(|(file, _)| Ok(prepare(format, &read_wav(file, format.sample_rate)?)))
            .collect::<Vec<Result<_>>>()
            .into_iter()
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            classes: labelled.classes,
            clips,
            labels: chosen.iter().map(|(_, l)| *l).collect(),
            voices: chosen
                .iter()
                .map(|(f, _)| fsdd_name(f).map(|(voice, _)| voice.to_string()))
                .collect(),
        })
    }

    /// Number of clips.
    pub fn len(&self) -> usize {
        self.clips.len()
    }

    /// True when there are no clips.
    pub fn is_empty(&self) -> bool {
        self.clips.is_empty()
    }

    /// Every clip as a log-mel picture, with its label (what the judge sees).
    pub fn pictures(&self, format: &AudioFormat) -> Pictures {
        Pictures {
            shape: mel_shape(format),
            values: self
                .clips
                .par_iter()
                .map(|c| log_mel_picture(format, c))
                .collect(),
            labels: self.labels.clone(),
        }
    }
}

/// Files with labels, and the class names the labels index.
struct Labelled {
    classes: Vec<String>,
    files: Vec<(PathBuf, usize)>,
}

/// Class names in a natural order: numerically when they are all numbers.
fn sort_classes(classes: &mut [String]) {
    classes.sort_by_key(|c| (c.parse::<u64>().unwrap_or(u64::MAX), c.clone()));
}

fn from_file_names(root: &Path, files: Vec<PathBuf>) -> Result<Labelled> {
    let label_of = |f: &Path| -> Result<String> {
        let stem = f.file_stem().unwrap_or_default().to_string_lossy();
        match stem.split_once('_') {
            Some((label, _)) if !label.is_empty() => Ok(label.to_string()),
            _ => Err(Error::Data {
                path: f.to_path_buf(),
                message: "cannot tell the label: name files <label>_<anything>.wav, or put them \
                          in one sub-folder per class"
                    .into(),
            }),
        }
    };
    let names = files
        .iter()
        .map(|f| label_of(f))
        .collect::<Result<Vec<_>>>()?;
    let mut classes: Vec<String> = names.clone();
    sort_classes(&mut classes);
    classes.dedup();
    if classes.len() < 2 {
        return Err(Error::Data {
            path: root.to_path_buf(),
            message: format!("needs at least 2 classes, found {classes:?}"),
        });
    }
    let files = files
        .into_iter()
        .zip(names)
        .map(|(f, n)| (f, classes.iter().position(|c| *c == n).expect("listed")))
        .collect();
    Ok(Labelled { classes, files })
}

fn from_class_folders(root: &Path) -> Result<Labelled> {
    let dirs = sorted_entries(root, |p| p.is_dir())?;
    let mut classes: Vec<String> = dirs
        .iter()
        .map(|d| {
            d.file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    sort_classes(&mut classes);
    let mut files = Vec::new();
    for (label, class) in classes.iter().enumerate() {
        files.extend(
            sorted_entries(&root.join(class), is_wav)?
                .into_iter()
                .map(|f| (f, label)),
        );
    }
    if files.is_empty() {
        return Err(Error::Data {
            path: root.to_path_buf(),
            message: "no WAV files (expected <label>_<name>.wav files or <class>/<name>.wav)"
                .into(),
        });
    }
    Ok(Labelled { classes, files })
}

/// The voice (speaker) and take of an FSDD-style `<label>_<voice>_<take>.wav` name.
fn fsdd_name(file: &Path) -> Option<(&str, usize)> {
    let stem = file.file_stem()?.to_str()?;
    let mut parts = stem.split('_');
    let (_label, voice, take) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || voice.is_empty() {
        return None;
    }
    Some((voice, take.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modality::audio::write_wav;

    fn tone(freq: f32) -> Vec<f32> {
        (0..1600)
            .map(|i| 0.3 * (std::f32::consts::TAU * freq * i as f32 / 8000.0).sin())
            .collect()
    }

    #[test]
    fn fsdd_names_split_by_take_and_folders_by_every_tenth_file() {
        let format = AudioFormat::fsdd();
        let flat = tempfile::tempdir().unwrap();
        for digit in [0, 1, 10] {
            for take in 0..7 {
                let path = flat.path().join(format!("{digit}_ann_{take}.wav"));
                write_wav(&path, &tone(200.0 + digit as f32 * 50.0), 8000).unwrap();
            }
        }
        let train = AudioDataset::load(flat.path(), Split::Train, &format).unwrap();
        let test = AudioDataset::load(flat.path(), Split::Test, &format).unwrap();
        assert_eq!(train.classes, ["0", "1", "10"]);
        assert_eq!((train.len(), test.len()), (6, 15));
        assert!(train.voices.iter().all(|v| v.as_deref() == Some("ann")));
        assert!((train.clips[0].iter().fold(0.0f32, |m, v| m.max(v.abs())) - 0.95).abs() < 1e-3);

        let nested = tempfile::tempdir().unwrap();
        for class in ["dog", "cat"] {
            std::fs::create_dir(nested.path().join(class)).unwrap();
            for i in 0..12 {
                write_wav(
                    &nested.path().join(class).join(format!("{i}.wav")),
                    &tone(300.0),
                    8000,
                )
                .unwrap();
            }
        }
        let test = AudioDataset::load(nested.path(), Split::Test, &format).unwrap();
        assert_eq!(test.classes, ["cat", "dog"]);
        assert_eq!(test.labels, [0, 1]);
        assert_eq!(test.voices, [None, None]);
    }

    #[test]
    fn unusable_folders_are_refused() {
        let format = AudioFormat::fsdd();
        let empty = tempfile::tempdir().unwrap();
        let err = AudioDataset::load(empty.path(), Split::Train, &format).unwrap_err();
        assert!(err.to_string().contains("no WAV files"), "{err}");

        let unlabelled = tempfile::tempdir().unwrap();
        write_wav(&unlabelled.path().join("clip.wav"), &tone(300.0), 8000).unwrap();
        let err = AudioDataset::load(unlabelled.path(), Split::Train, &format).unwrap_err();
        assert!(err.to_string().contains("cannot tell the label"), "{err}");

        let broken = tempfile::tempdir().unwrap();
        for name in ["0_a_9.wav", "1_a_9.wav"] {
            std::fs::write(broken.path().join(name), b"RIFF....WAVEjunk").unwrap();
        }
        let err = AudioDataset::load(broken.path(), Split::Train, &format).unwrap_err();
        assert!(err.to_string().contains("0_a_9.wav"), "{err}");
    }
}
