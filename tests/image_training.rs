//! The image pipeline end to end on tiny 8x8 images: training learns the classes, checkpoints
//! load, generation is seeded, and the CLI writes PNGs.

mod common;

use std::ops::ControlFlow;

use aigc::checkpoint;
use aigc::modality::continuous::FlowGenerateOptions;
use aigc::modality::image::generate_images;
use aigc::train::{pretrain_image, ImageRecipe, Start};
use common::{aigc, tiny_image_pattern, write_tiny_image_dataset, TINY_IMAGE_SHAPE};

fn mse(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum::<f32>() / a.len() as f32
}

#[test]
fn a_tiny_model_learns_to_draw_each_class() {
    let dir = tempfile::tempdir().unwrap();
    write_tiny_image_dataset(&dir.path().join("data"));
    let run = dir.path().join("run");
    let mut recipe = ImageRecipe::tiny();
    recipe.train.steps = 800;
    recipe.train.batch_size = 16;
    recipe.train.eval_every = 400;
    recipe.train.checkpoint_every = 800;
    let state = pretrain_image(
        &dir.path().join("data"),
        &run,
        Start::Fresh(&recipe),
        |_| ControlFlow::Continue(()),
    )
    .unwrap();
    assert!(
        state.val_loss.unwrap() < 0.6,
        "val loss {:?}",
        state.val_loss
    );

    let (model, _) = checkpoint::load_image(&run, &aigc::default_device()).unwrap();
    let labels: Vec<Option<usize>> = (0..6).map(|i| Some(i % 3)).collect();
    let options = FlowGenerateOptions {
        seed: 5,
        ..FlowGenerateOptions::image()
    };
    let images = generate_images(&model, &TINY_IMAGE_SHAPE, &labels, &options).unwrap();
    for (img, label) in images.iter().zip(&labels) {
        let own = mse(img, &tiny_image_pattern(label.unwrap()));
        let others = (0..3)
            .filter(|&c| Some(c) != *label)
            .map(|c| mse(img, &tiny_image_pattern(c)));
        assert!(own < 0.25, "class {label:?}: mse {own} to its own pattern");
        assert!(
            others.into_iter().all(|o| o > own),
            "class {label:?} looks like another class"
        );
    }
    assert_eq!(
        generate_images(&model, &TINY_IMAGE_SHAPE, &labels, &options).unwrap(),
        images,
        "seeded"
    );
    let err = generate_images(&model, &TINY_IMAGE_SHAPE, &[Some(3)], &options)
        .unwrap_err()
        .to_string();
    assert!(err.contains("label 3 is outside"), "{err}");
}

#[test]
fn cli_trains_and_writes_pngs_and_a_grid() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    write_tiny_image_dataset(&data);
    let run = dir.path().join("run");
    let o = aigc(&[
        "pretrain",
        "image",
        "--preset",
        "tiny",
        "--data",
        data.to_str().unwrap(),
        "--out",
        run.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = dir.path().join("samples");
    let o = aigc(&[
        "generate",
        "image",
        "--model",
        run.to_str().unwrap(),
        "--count",
        "4",
        "--label",
        "2",
        "--grid",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for name in ["2_0.png", "2_3.png", "grid.png"] {
        assert!(out.join(name).is_file(), "missing {name}");
    }
    let o = aigc(&[
        "generate",
        "image",
        "--model",
        run.to_str().unwrap(),
        "--label",
        "7",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("outside the model's 3 classes"));
    let judge = dir.path().join("judge");
    let o = aigc(&[
        "eval",
        "image",
        "--model",
        run.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--classifier",
        judge.to_str().unwrap(),
        "--per-class",
        "2",
    ]);
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let last = stdout.lines().last().unwrap();
    assert!(
        last.starts_with("accuracy=") && last.contains(" frechet="),
        "{stdout}"
    );
    assert!(
        stdout.contains("real test images: count=3 accuracy=1.0000"),
        "the judge knows the real patterns: {stdout}"
    );
    assert!(judge.join("model.safetensors").is_file());
    let o = aigc(&["generate", "text", "--model", run.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("is an image model; generating text needs a text model"),
        "{err}"
    );
}
