//! Build script: the embedded page is rebuilt into the binary whenever web/dist changes.

// The terminal page is embedded from the committed web/dist (src/web_assets.rs). Rebuild
// when it changes, and stop with a clear message if it is missing.
fn main() {
    println!("cargo::rerun-if-changed=web/dist");
    if !std::path::Path::new("web/dist/index.html").exists() {
        panic!(
            "web/dist/index.html is missing: web/dist is committed, restore it with `git checkout -- web/dist` or rebuild it with `npm --prefix web ci && npm --prefix web run build`"
        );
    }
}
