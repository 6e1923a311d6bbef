//! The audio pipeline end to end on tiny synthetic clips: training learns each class's pitch,
//! checkpoints load, generation is seeded, and the CLI writes WAVs and spectrograms.

mod common;

use std::ops::ControlFlow;
use std::path::Path;

use aigc::checkpoint::{self, ModelConfig};
use aigc::modality::audio::{generate_clips, magnitudes, read_wav, AudioFormat, OnsetPriorConfig};
use aigc::modality::continuous::FlowGenerateOptions;
use aigc::train::{pretrain_audio, AudioRecipe, Start};
use common::{aigc, write_tiny_audio_dataset, TINY_AUDIO_PITCHES};

/// The frequency (Hz) of the loudest bin, summed over a clip's frames.
fn dominant_pitch(format: &AudioFormat, clip: &[f32]) -> f32 {
    let mags = magnitudes(&format.stft().forward(clip));
    let n_bins = format.n_bins();
    let mut energy = vec![0.0f32; n_bins];
    for frame in mags.chunks(n_bins) {
        energy.iter_mut().zip(frame).for_each(|(e, m)| *e += m);
    }
    let loudest = (0..n_bins)
        .max_by(|&a, &b| energy[a].total_cmp(&energy[b]))
        .unwrap();
    loudest as f32 * format.sample_rate as f32 / format.n_fft as f32
}

#[test]
fn a_tiny_model_learns_each_class_pitch() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    write_tiny_audio_dataset(&data);
    let run = dir.path().join("run");
    let mut recipe = AudioRecipe::tiny();
    // fitted when the run starts; generation then starts each clip from it
    recipe.model.onset_prior = Some(OnsetPriorConfig {
        components: 2,
        dims: 4,
        fitted: None,
    });
    recipe.train.steps = 400;
    recipe.train.batch_size = 8;
    recipe.train.eval_every = 200;
    recipe.train.checkpoint_every = 400;
    let state = pretrain_audio(&data, &run, Start::Fresh(&recipe), |_| {
        ControlFlow::Continue(())
    })
    .unwrap();
    // Untrained: about 2.2 (flow 2 + 0.1 x length cross-entropy ln 8).
    assert!(
        state.val_loss.unwrap() < 1.6,
        "val loss {:?}",
        state.val_loss
    );

    let (model, config) = checkpoint::load_audio(&run, &aigc::default_device()).unwrap();
    let ModelConfig::Audio(audio) = &config.model else {
        unreachable!()
    };
    let prior = audio.onset_prior.as_ref().and_then(|p| p.fitted.as_ref());
    assert_eq!(prior.unwrap().voices, vec![vec!["synth"]; 3]);
    let labels: Vec<Option<usize>> = (0..6).map(|i| Some(i % 3)).collect();
    let options = FlowGenerateOptions {
        seed: 3,
        ..FlowGenerateOptions::audio()
    };
    let clips = generate_clips(&model, audio, &labels, &options).unwrap();
    for (clip, label) in clips.iter().zip(&labels) {
        let pitch = dominant_pitch(&audio.format, clip);
        let wanted = TINY_AUDIO_PITCHES[label.unwrap()];
        assert!(
            (pitch - wanted).abs() <= 250.0,
            "class {label:?}: pitch {pitch} Hz, wanted {wanted}"
        );
        assert!(clip.len() >= 32 && clip.len() <= audio.format.max_samples());
    }
    assert_eq!(
        generate_clips(&model, audio, &labels, &options).unwrap(),
        clips,
        "seeded"
    );
    let err = generate_clips(&model, audio, &[Some(3)], &options)
        .unwrap_err()
        .to_string();
    assert!(err.contains("label 3 is outside"), "{err}");
}

#[test]
fn cli_trains_writes_wavs_and_spectrograms_and_evaluates() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    write_tiny_audio_dataset(&data);
    let (data, run) = (data.to_str().unwrap(), dir.path().join("run"));
    let run = run.to_str().unwrap();
    let o = aigc(&[
        "pretrain", "audio", "--preset", "tiny", "--data", data, "--out", run,
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = dir.path().join("samples");
    let o = aigc(&[
        "generate",
        "audio",
        "--model",
        run,
        "--count",
        "3",
        "--label",
        "1",
        "--spectrogram",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for name in ["1_0.wav", "1_2.wav", "1_0.png"] {
        assert!(out.join(name).is_file(), "missing {name}");
    }
    let clip = read_wav(&out.join("1_0.wav"), 8000).unwrap();
    assert!(!clip.is_empty() && clip.iter().all(|v| v.abs() <= 1.0));

    let o = aigc(&[
        "generate", "audio", "--model", run, "--label", "3", "--out", "x",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("outside the model's 3 classes"));

    // An onset prior fitted onto the trained model: same weights, clips start from the prior.
    let with_prior = dir.path().join("with-prior");
    let with_prior = with_prior.to_str().unwrap();
    let o = aigc(&[
        "pretrain",
        "onset-prior",
        "--model",
        run,
        "--data",
        data,
        "--out",
        with_prior,
        "--dims",
        "4",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let config = checkpoint::load_config(Path::new(with_prior)).unwrap();
    let ModelConfig::Audio(audio) = &config.model else {
        unreachable!()
    };
    let prior = audio.onset_prior.as_ref().unwrap();
    let fitted = prior.fitted.as_ref().unwrap();
    assert_eq!(
        fitted.voices,
        vec![vec!["synth"]; 3],
        "voices from the file names"
    );
    let o = aigc(&[
        "generate",
        "audio",
        "--model",
        with_prior,
        "--count",
        "2",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = aigc(&[
        "pretrain",
        "onset-prior",
        "--model",
        data,
        "--data",
        data,
        "--out",
        with_prior,
    ]);
    assert_eq!(o.status.code(), Some(1), "a folder of WAVs is not a model");

    let judge = dir.path().join("judge");
    let o = aigc(&[
        "eval",
        "audio",
        "--model",
        run,
        "--data",
        data,
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
        stdout.contains("real test clips: count=15 accuracy=1.0000"),
        "the judge tells the pitches apart: {stdout}"
    );
    assert!(stdout.contains("codec round trip: count=15"), "{stdout}");
}

#[test]
fn bad_audio_inputs_get_one_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let run = run.to_str().unwrap();
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let broken = dir.path().join("broken");
    write_tiny_audio_dataset(&broken);
    std::fs::write(
        broken.join("2_synth_7.wav"),
        b"RIFF\x10\x00\x00\x00WAVEfmt ",
    )
    .unwrap();
    let cases: [(&Path, &str); 2] = [(&empty, "no WAV files"), (&broken, "2_synth_7.wav")];
    for (data, expected) in cases {
        let o = aigc(&[
            "pretrain",
            "audio",
            "--preset",
            "tiny",
            "--data",
            data.to_str().unwrap(),
            "--out",
            run,
        ]);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains(expected) && !stderr.contains("panicked"),
            "{stderr}"
        );
    }
}
