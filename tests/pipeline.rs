//! The one library entry point: any shipped checkpoint loads into a `Pipeline`, which
//! generates its own modality's content and refuses the others by name.

mod common;

use aigc::modality::continuous::FlowGenerateOptions;
use aigc::modality::text::GenerateOptions;
use aigc::modality::Modality;
use aigc::Pipeline;
use image::DynamicImage;

fn load(name: &str) -> Pipeline {
    Pipeline::load(common::root().join("models").join(name)).unwrap()
}

#[test]
fn each_shipped_model_generates_its_modality() {
    let text = load("text-shakespeare");
    assert_eq!(text.modality(), Modality::Text);
    let options = GenerateOptions {
        max_tokens: 20,
        ..GenerateOptions::default()
    };
    let mut streamed = String::new();
    let out = text
        .generate_text("ROMEO:", &options, |piece| streamed.push_str(piece))
        .unwrap();
    assert_eq!(out.generated_tokens, 20);
    assert_eq!(streamed, out.text);

    let image = load("image-mnist");
    let images = image
        .generate_image(&[Some(3), None], &FlowGenerateOptions::image())
        .unwrap();
    assert_eq!(images.len(), 2);
    assert!(matches!(&images[0], DynamicImage::ImageLuma8(i) if i.dimensions() == (28, 28)));

    let audio = load("audio-fsdd");
    let clips = audio
        .generate_audio(&[Some(4)], &FlowGenerateOptions::audio())
        .unwrap();
    assert_eq!(clips[0].sample_rate, 8000);
    let seconds = clips[0].samples.len() as f32 / 8000.0;
    assert!((0.1..=1.0).contains(&seconds), "{seconds} s");
    assert!(clips[0].samples.iter().any(|s| s.abs() > 0.1), "not silent");

    let err = image
        .generate_text("x", &options, |_| {})
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("is an image model; generating text needs a text model"),
        "{err}"
    );
    let err = text
        .generate_audio(&[Some(1)], &FlowGenerateOptions::audio())
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("is a text model; generating audio needs an audio model"),
        "{err}"
    );
}

/// The shipped joint model writes text, and draws images and clips from text prompts and
/// from labels, all through one core.
#[test]
fn the_shipped_joint_model_generates_every_modality() {
    let multi = load("multi");
    assert!(multi.reads_prompts());
    let options = GenerateOptions {
        max_tokens: 20,
        ..GenerateOptions::default()
    };
    let out = multi.generate_text("ROMEO:", &options, |_| {}).unwrap();
    assert_eq!(out.generated_tokens, 20);

    // Its card's guidance for images (2.5) comes with it; clips keep the modality's default.
    let flow = multi.image_options();
    assert_eq!((flow.guidance, multi.audio_options().guidance), (2.5, 2.0));
    assert_eq!(
        load("image-mnist").image_options(),
        FlowGenerateOptions::image()
    );
    let images = multi
        .generate_image_from_prompts(&["a handwritten seven"], &flow)
        .unwrap();
    assert!(matches!(&images[0], DynamicImage::ImageLuma8(i) if i.dimensions() == (28, 28)));
    assert_eq!(multi.generate_image(&[Some(2)], &flow).unwrap().len(), 1);

    let clips = multi
        .generate_audio_from_prompts(&["say four"], &FlowGenerateOptions::audio())
        .unwrap();
    assert_eq!(clips[0].sample_rate, 8000);
    assert!(clips[0].samples.iter().any(|s| s.abs() > 0.1), "not silent");
}

#[test]
fn classifiers_and_missing_checkpoints_are_refused() {
    let err = Pipeline::load(common::root().join("models/mnist-classifier"));
    let err = err.err().unwrap().to_string();
    assert!(err.contains("classifier, which generates nothing"), "{err}");
    let err = Pipeline::load("no/such/checkpoint")
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("no/such/checkpoint"), "{err}");
}
