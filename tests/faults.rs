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
