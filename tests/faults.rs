//! Faults during training: `kill -9` at arbitrary moments never leaves an unloadable
//! checkpoint, and resuming after each kill ends exactly where an uninterrupted run ends.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

const STEPS: &str = "300";

fn pretrain(data: &Path, out: &Path, resume: bool) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_aigc"));
    cmd.args(["pretrain", "text", "--data", data.to_str().unwrap()])
        .args(["--out", out.to_str().unwrap()]);
    if resume {
        cmd.arg("--resume");
    } else {
        cmd.args(["--preset", "tiny", "--steps", STEPS]);
    }
    cmd.stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null());
    cmd
}

fn finished(o: &Output) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains(&format!("done: {STEPS} steps")), "{err}");
}

#[test]
fn kill_9_at_any_moment_loses_nothing_and_resume_is_exact() {
    let dir = tempfile::tempdir().unwrap();
    let data = common::small_corpus(dir.path(), 20_000);
    let straight = dir.path().join("straight");
    finished(&pretrain(&data, &straight, false).output().unwrap());

    let killed = dir.path().join("killed");
    // Kill after a spread of delays, so some kills land mid-step and some mid-save (the tiny
    // recipe saves every 4 steps).
    let mut kills = 0;
    for delay_ms in [40u64, 90, 150, 230, 310, 420, 530, 650] {
        let resume = killed.join(aigc::checkpoint::CONFIG_FILE).exists();
        let mut child = pretrain(&data, &killed, resume).spawn().unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        if child.try_wait().unwrap().is_some() {
            break; // finished before the kill
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        kills += 1;
        if killed.exists() {
            let device = aigc::default_device();
            aigc::checkpoint::load_text(&killed, &device)
                .unwrap_or_else(|e| panic!("after a kill at {delay_ms} ms: {e}"));
        }
    }
    assert!(
        kills >= 3,
        "only {kills} kills landed before training ended"
    );
    let resume = killed.join(aigc::checkpoint::CONFIG_FILE).exists();
    finished(&pretrain(&data, &killed, resume).output().unwrap());

    assert_eq!(common::losses(&straight), common::losses(&killed));
    let ids = [1, 5, 9, 2];
    assert_eq!(
        common::logits_of(&straight, &ids),
        common::logits_of(&killed, &ids),
        "final weights differ"
    );
}

/// The step of the checkpoint in `dir` (0 before the first save).
fn saved_step(dir: &Path) -> usize {
    aigc::checkpoint::load_train_state(dir).map_or(0, |s| s.step)
}

/// A full disk (simulated by a file size limit smaller than the weights, so writes fail with
/// EFBIG as they would with ENOSPC) fails the save with a clear error, removes the
/// half-written copy and keeps the previous checkpoint loadable and unchanged.
#[test]
fn a_full_disk_keeps_the_previous_checkpoint() {
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().unwrap();
    let data = common::small_corpus(dir.path(), 20_000);
    let out = dir.path().join("run");
    let mut child = pretrain(&data, &out, false).spawn().unwrap();
    while saved_step(&out) == 0 {
        assert!(child.try_wait().unwrap().is_none(), "training ended early");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let step = saved_step(&out);
    let weights = out.join(aigc::checkpoint::WEIGHTS_FILE);
    let limit = std::fs::metadata(&weights).unwrap().len() / 2;
    let metrics = std::fs::metadata(out.join("metrics.jsonl")).unwrap().len();
    assert!(
        metrics < limit,
        "the limit must let the metrics log be rewritten"
    );

    let mut resume = pretrain(&data, &out, true);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        resume.pre_exec(move || {
            let rlimit = libc::rlimit {
                rlim_cur: limit,
                rlim_max: limit,
            };
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN); // writes fail instead of killing
            match libc::setrlimit(libc::RLIMIT_FSIZE, &rlimit) {
                0 => Ok(()),
                _ => Err(std::io::Error::last_os_error()),
            }
        });
    }
    let o = resume.output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(err.contains("could not save"), "{err}");
    assert!(
        err.contains("the previous checkpoint there is intact"),
        "{err}"
    );
    assert!(
        !dir.path().join("run.tmp").exists(),
        "half-written copy left"
    );
    assert_eq!(saved_step(&out), step);
    aigc::checkpoint::load_text(&out, &aigc::default_device()).unwrap();
    // Without the limit the run continues from that checkpoint.
    finished(&pretrain(&data, &out, true).output().unwrap());
}

/// An output directory that cannot be created fails before any training.
#[test]
fn an_unwritable_output_directory_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let data = common::small_corpus(dir.path(), 20_000);
    let file = dir.path().join("a-file");
    std::fs::write(&file, "not a directory").unwrap();
    let out = file.join("run");
    let o = pretrain(&data, &out, false).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(err.contains(out.to_str().unwrap()), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}
