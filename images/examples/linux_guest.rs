//! Builds (first run on a machine: minutes) or finds the Linux test guest
//! (`images::linux_guest`) and prints its files and the command-line switches
//! this project's test hosts need, one `key=value` a line. `scripts/bench_linux`
//! runs it:
//!
//! ```text
//! cargo run -p images --example linux_guest
//! ```

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let guest = images::linux_guest::linux_guest()?;
    println!("vmlinux={}", guest.vmlinux.display());
    println!("initramfs={}", guest.initramfs.display());
    println!(
        "host_switches={}",
        images::linux_guest::LINUX_GUEST_HOST_SWITCHES
    );
    if let Some(t) = guest.built_in {
        println!("built_in_s={:.1}", t.as_secs_f64());
    }
    Ok(())
}
