//! A driver for the TON sandbox bridge (`tests/ton-bridge/bridge.js`): the
//! real TVM, as WASM in node, behind JSON lines on stdin/stdout.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use serde_json::Value;

/// A running bridge process.
pub struct Bridge {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Bridge {
    /// Starts the bridge (its npm packages are installed by `just setup`).
    pub fn start() -> anyhow::Result<Self> {
        let dir = crate::repo_root().join("tests/ton-bridge");
        anyhow::ensure!(
            dir.join("node_modules/@ton/sandbox").is_dir(),
            "{}/node_modules is missing: run `just setup` (npm ci)",
            dir.display()
        );
        let mut child = Command::new("node")
            .arg("bridge.js")
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| anyhow::anyhow!("starting node: {e}"))?;
        let stdin = child
            .stdin
            .take()
            .ok_or_else(|| anyhow::anyhow!("no stdin"))?;
        let stdout = BufReader::new(
            child
                .stdout
                .take()
                .ok_or_else(|| anyhow::anyhow!("no stdout"))?,
        );
        Ok(Self {
            child,
            stdin,
            stdout,
        })
    }

    /// Sends one request and returns the answer (an error if `ok` is false).
    pub fn call(&mut self, request: Value) -> anyhow::Result<Value> {
        writeln!(self.stdin, "{request}")?;
        self.stdin.flush()?;
        let mut line = String::new();
        self.stdout.read_line(&mut line)?;
        let answer: Value = serde_json::from_str(&line)
            .map_err(|e| anyhow::anyhow!("bridge answered {line:?}: {e}"))?;
        if answer.get("ok") != Some(&Value::Bool(true)) {
            anyhow::bail!(
                "bridge error for {request}: {}",
                answer.get("error").unwrap_or(&Value::Null)
            );
        }
        Ok(answer)
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
