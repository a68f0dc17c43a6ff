// Embeds the browser page when it has been built; otherwise the server serves a page that
// says how to build it (the Rust build never fails for a missing bundle).
fn main() {
    println!("cargo::rustc-check-cfg=cfg(termcell_web_bundle)");
    println!("cargo::rerun-if-changed=web/dist");
    if std::path::Path::new("web/dist/index.html").exists() {
        println!("cargo::rustc-cfg=termcell_web_bundle");
    } else {
        println!(
            "cargo::warning=web/dist is missing: the terminal page is not embedded. Build it with `npm --prefix web ci && npm --prefix web run build`, then rebuild termcell."
        );
    }
}
