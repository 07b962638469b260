//! Writes every image to a directory, to boot them by hand (for example under
//! QEMU, the reference spicebox is compared with):
//!
//! ```text
//! cargo run -p images --example write_images -- /tmp/spicebox-images
//! ```

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir: PathBuf = std::env::args_os()
        .nth(1)
        .ok_or("usage: write_images DIR")?
        .into();
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("demo.img");
    images::write_image(images::demo_disk(), &path)?;
    println!("{}", path.display());
    for image in images::TestImage::ALL {
        let path = dir.join(format!("{}.img", image.name()));
        images::write_image(image.bytes(), &path)?;
        println!("{}", path.display());
        // A Rust guest's symbols, for the RIP of an exception line.
        if let Some(elf) = image.elf() {
            let path = dir.join(format!("{}.elf", image.name()));
            images::write_image(elf, &path)?;
            println!("{}", path.display());
        }
    }
    // Not a disk: boot it with `spicebox run --kernel` (or QEMU's -kernel).
    let path = dir.join("linux-stub.bin");
    images::write_image(images::linux_stub(), &path)?;
    println!("{}", path.display());
    Ok(())
}
