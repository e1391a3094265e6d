//! drover-watch: manifest watching, debounce and reload requests.
//!
//! It will own the file watcher (on the manifest's parent directory, so rename-over saves and
//! Kubernetes ConfigMap symlink swaps are seen), the debounce, and the reload requests it sends
//! on the same control channel as signals.
//!
//! Empty until the hot-reload issue.
#![forbid(unsafe_code)]
