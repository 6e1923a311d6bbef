//! Labelled image datasets: MNIST-style IDX files, or a folder with one sub-folder of
//! PNG/JPEG images per class (the sub-folder names are the class names).

use std::path::{Path, PathBuf};

use super::{read_idx, read_image, ImageShape};
use crate::modality::judge::Pictures;
use crate::modality::{sorted_entries, Split};
use crate::{Error, Result};

/// Images (stored patchified, `[n, n_patches * patch_dim]`) with their class labels.
#[derive(Debug, Clone)]
pub struct ImageDataset {
    /// Geometry of every image.
    pub shape: ImageShape,
    /// Class names; a label is an index into this list.
    pub classes: Vec<String>,
    patches: Vec<f32>,
    labels: Vec<usize>,
}

impl ImageDataset {
    /// Loads `split` of the dataset at `path`: a folder holding MNIST's four IDX files
    /// (optionally `.gz`), or a folder of class sub-folders of PNG/JPEG images of `shape`'s size.
    pub fn load(path: &Path, split: Split, shape: ImageShape) -> Result<Self> {
        shape.validate()?;
        let prefix = match split {
            Split::Train => "train",
            Split::Test => "t10k",
        };
        match find_idx(path, &format!("{prefix}-images-idx3-ubyte")) {
            Some(images) => {
                let labels =
                    find_idx(path, &format!("{prefix}-labels-idx1-ubyte")).ok_or_else(|| {
                        Error::Data {
                            path: path.to_path_buf(),
                            message: format!(
                                "found {} but no {prefix}-labels-idx1-ubyte[.gz]",
                                images.display()
                            ),
                        }
                    })?;
                Self::from_idx(&images, &labels, shape)
            }
            None => Self::from_folder(path, split, shape),
        }
    }

    /// Reads an IDX image file `[n, rows, cols]` and its label file `[n]`.
    pub fn from_idx(images: &Path, labels: &Path, shape: ImageShape) -> Result<Self> {
        let imgs = read_idx(images)?;
        let labs = read_idx(labels)?;
        let bad = |path: &Path, message: String| Error::Data {
            path: path.to_path_buf(),
            message,
        };
        if imgs.dims.len() != 3
            || shape.channels != 1
            || imgs.dims[1..] != [shape.height, shape.width]
        {
            return Err(bad(
                images,
                format!(
                    "holds images of shape {:?}; the model expects {}x{} with {} channel(s)",
                    &imgs.dims[1..],
                    shape.height,
                    shape.width,
                    shape.channels
                ),
            ));
        }
        if labs.dims != [imgs.dims[0]] {
            return Err(bad(
                labels,
                format!("has {:?} labels for {} images", labs.dims, imgs.dims[0]),
            ));
        }
        let n_classes = labs
            .data
            .iter()
            .copied()
            .max()
            .map_or(0, |m| m as usize + 1);
        let classes = (0..n_classes).map(|c| c.to_string()).collect();
        let mut patches = Vec::with_capacity(imgs.data.len());
        for img in imgs.data.chunks_exact(shape.n_values()) {
            let pixels: Vec<f32> = img.iter().map(|&v| v as f32 / 127.5 - 1.0).collect();
            patches.extend(shape.patchify(&pixels));
        }
        let labels = labs.data.iter().map(|&l| l as usize).collect();
        Ok(Self {
            shape,
            classes,
            patches,
            labels,
        })
    }

    /// Reads `root/<class>/<image>` files; every 10th image of each class (in name order)
    /// is the test split.
    pub fn from_folder(root: &Path, split: Split, shape: ImageShape) -> Result<Self> {
        let classes = sorted_entries(root, |p| p.is_dir())?;
        if classes.is_empty() {
            return Err(Error::Data {
                path: root.to_path_buf(),
                message:
                    "no class sub-folders (expected <root>/<class>/<image>.png or MNIST IDX files)"
                        .into(),
            });
        }
        let mut data = Self {
            shape,
            classes: Vec::new(),
            patches: Vec::new(),
            labels: Vec::new(),
        };
        for (label, dir) in classes.iter().enumerate() {
            let is_image = |p: &Path| {
                let ext = p
                    .extension()
                    .and_then(|e| e.to_str())
                    .map(str::to_ascii_lowercase);
                matches!(ext.as_deref(), Some("png" | "jpg" | "jpeg"))
            };
            let files = sorted_entries(dir, is_image)?;
            for (i, file) in files.iter().enumerate() {
                if (i % 10 == 9) == (split == Split::Test) {
                    data.patches
                        .extend(shape.patchify(&read_image(file, &shape)?));
                    data.labels.push(label);
                }
            }
            data.classes.push(
                dir.file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned(),
            );
        }
        if data.labels.is_empty() {
            return Err(Error::Data {
                path: root.to_path_buf(),
                message: format!("no PNG/JPEG images for the {split:?} split"),
            });
        }
        Ok(data)
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when there are no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The patches of image `i`, `[n_patches * patch_dim]`.
    pub fn patches(&self, i: usize) -> &[f32] {
        let n = self.shape.n_values();
        &self.patches[i * n..(i + 1) * n]
    }

    /// The label of image `i`.
    pub fn label(&self, i: usize) -> usize {
        self.labels[i]
    }

    /// Every image as `[C, H, W]` pixels, with its label (what a judge sees).
    pub fn pictures(&self) -> Pictures {
        Pictures {
            shape: self.shape,
            values: (0..self.len())
                .map(|i| self.shape.unpatchify(self.patches(i)))
                .collect(),
            labels: self.labels.clone(),
        }
    }
}

/// `dir/name` or `dir/name.gz`, whichever exists.
fn find_idx(dir: &Path, name: &str) -> Option<PathBuf> {
    [name.to_string(), format!("{name}.gz")]
        .into_iter()
        .map(|n| dir.join(n))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modality::image::write_png;

    #[test]
    fn loads_the_shipped_mnist_test_split() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("datasets/mnist");
        let test = ImageDataset::load(&root, Split::Test, ImageShape::mnist()).unwrap();
        assert_eq!(test.len(), 10_000);
        assert_eq!(test.classes.len(), 10);
        assert_eq!(test.label(0), 7); // the famous first test digit
        let p = test.patches(0);
        assert!(p.iter().all(|v| (-1.0..=1.0).contains(v)) && p.iter().any(|&v| v > 0.9));
    }

    #[test]
    fn loads_class_folders_and_splits_every_tenth_image() {
        let dir = tempfile::tempdir().unwrap();
        let shape = ImageShape {
            channels: 1,
            height: 4,
            width: 4,
            patch_size: 2,
        };
        for class in ["cat", "dog"] {
            std::fs::create_dir(dir.path().join(class)).unwrap();
            for i in 0..10 {
                let path = dir.path().join(class).join(format!("{i}.png"));
                write_png(&path, &[i as f32 / 10.0; 16], &shape).unwrap();
            }
        }
        let train = ImageDataset::load(dir.path(), Split::Train, shape).unwrap();
        let test = ImageDataset::load(dir.path(), Split::Test, shape).unwrap();
        assert_eq!((train.len(), test.len()), (18, 2));
        assert_eq!(train.classes, vec!["cat", "dog"]);
        assert_eq!((test.label(0), test.label(1)), (0, 1));
    }

    #[test]
    fn empty_folders_and_wrong_sizes_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let shape = ImageShape::mnist();
        let err = ImageDataset::load(dir.path(), Split::Train, shape)
            .unwrap_err()
            .to_string();
        assert!(err.contains("no class sub-folders"), "{err}");
        std::fs::create_dir(dir.path().join("a")).unwrap();
        let err = ImageDataset::load(dir.path(), Split::Train, shape)
            .unwrap_err()
            .to_string();
        assert!(err.contains("no PNG/JPEG"), "{err}");
        let small = ImageShape {
            height: 8,
            width: 8,
            ..shape
        };
        write_png(&dir.path().join("a/x.png"), &[0.0; 64], &small).unwrap();
        let err = ImageDataset::load(dir.path(), Split::Train, shape)
            .unwrap_err()
            .to_string();
        assert!(err.contains("8x8") && err.contains("28x28"), "{err}");
    }
}
