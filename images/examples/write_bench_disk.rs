//! Writes the virtio-blk benchmark's disk (`images::virtio_bench_disk`): the
//! virtio-bench guest followed by patterned sectors, `SIZE_MIB` in all.
//! `scripts/bench_blk` runs it:
//!
//! ```text
//! cargo run -p images --example write_bench_disk -- /tmp/bench.img 256
//! ```

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(path), Some(mib)) = (args.next(), args.next()) else {
        return Err("usage: write_bench_disk PATH SIZE_MIB".into());
    };
    let size = mib.parse::<usize>()? * 1024 * 1024;
    images::write_image(&images::virtio_bench_disk(size), &path)?;
    println!("{path}");
    Ok(())
}
