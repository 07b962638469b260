//! Which codecs a display client's images may go in (`ImageCompression`,
//! `WanCompression`), and the clients' GLZ dictionaries.
//!
//! A GLZ dictionary belongs to a client: spice-gtk keeps one decoder window per
//! session, shared by its display channels, and names it in DISPLAY_INIT
//! (dictionary id, window size in pixels). Ids must then be unique and gapless
//! across the session's display channels, so they share one dictionary: the
//! one made for (session, dictionary id) by the first display channel that
//! asked, while any of them is linked. Each channel copies only from its own
//! images (see `image::GlzDictionary`). spice-html5 announces a window of 0: it
//! has no GLZ decoder and never gets GLZ.
//!
//! Only one session exists at a time (a new MAIN replaces the old one), so one
//! slot is kept; the display tasks hold the dictionary, the slot only a weak
//! reference, so it goes when the session's display channels do.

use std::sync::{Arc, Mutex, Weak};

use tracing::debug;

use crate::codec::{encode_image_glz, Encoders, GlzUse, ImagePolicy, ImageTag, ENCODERS};
use crate::image::{lz4_rgb32, lz_rgb32, GlzDictionary};
use crate::server::lock;
use crate::{ImageCompression, ImageOptions, WanCompression};

/// A client's dictionary, as its display channels share it.
pub type SharedGlz = Arc<Mutex<GlzDictionary>>;

struct Slot {
    session: u32,
    dict_id: u8,
    dict: Weak<Mutex<GlzDictionary>>,
}

/// The display kind's image settings and the current client's dictionary.
pub struct ImageChoice {
    opts: ImageOptions,
    slot: Mutex<Option<Slot>>,
}

impl ImageChoice {
    pub fn new(opts: ImageOptions) -> ImageChoice {
        ImageChoice {
            opts,
            slot: Mutex::new(None),
        }
    }

    /// Whether JPEG may be used at all (the auto modes, as spice-server).
    pub fn jpeg_allowed(&self) -> bool {
        matches!(
            self.opts.compression,
            ImageCompression::AutoGlz | ImageCompression::AutoLz
        )
    }

    fn glz_mode(&self) -> bool {
        matches!(
            self.opts.compression,
            ImageCompression::AutoGlz | ImageCompression::Glz
        )
    }

    /// The GLZ dictionary for a display channel of `session` whose client
    /// announced dictionary `dict_id` with a window of `window` pixels. None
    /// when GLZ is not in use: another mode, or no window (spice-html5).
    pub fn dictionary(&self, session: u32, dict_id: u8, window: i64) -> Option<SharedGlz> {
        if !self.glz_mode() {
            return None;
        }
        let mut slot = lock(&self.slot);
        if let Some(s) = slot.as_ref() {
            if (s.session, s.dict_id) == (session, dict_id) {
                if let Some(d) = s.dict.upgrade() {
                    return Some(d);
                }
            }
        }
        let dict = Arc::new(Mutex::new(GlzDictionary::new(window)?));
        debug!(
            session,
            dict_id,
            window,
            kept = lock(&dict).window(),
            "GLZ dictionary"
        );
        *slot = Some(Slot {
            session,
            dict_id,
            dict: Arc::downgrade(&dict),
        });
        Some(dict)
    }

    /// A SpiceImage of the pixels, in the codecs the mode allows: `policy`
    /// says what the client takes (LZ4) and whether this image may be lossy;
    /// `glz`: the client's dictionary and this channel's id in it; `slow`:
    /// the link estimate (None: not known yet, which is not slow).
    #[allow(clippy::too_many_arguments)]
    pub fn encode(
        &self,
        tag: ImageTag,
        width: u32,
        height: u32,
        pixels: &[u32],
        policy: ImagePolicy,
        glz: Option<(&SharedGlz, u8)>,
        slow: Option<bool>,
    ) -> Vec<u8> {
        let (enc, policy) = self.encoders(policy);
        let zlib = match self.opts.zlib_glz {
            WanCompression::Always => true,
            WanCompression::Never => false,
            WanCompression::Auto => slow == Some(true),
        };
        let glz = glz
            .filter(|_| self.glz_mode())
            .map(|(dict, source)| GlzUse {
                dict: dict.as_ref(),
                source,
                zlib,
            });
        encode_image_glz(tag, width, height, pixels, policy, enc, glz)
    }

    /// The encoders `codec` may try under this mode, and the policy adjusted
    /// to it (lossy only in the auto modes, raw when off).
    fn encoders(&self, policy: ImagePolicy) -> (Encoders, ImagePolicy) {
        let only = |lz, lz4| Encoders {
            lz,
            lz4,
            jpeg: None,
        };
        let lossless = ImagePolicy {
            lossy: false,
            ..policy
        };
        match self.opts.compression {
            ImageCompression::AutoGlz | ImageCompression::AutoLz => (ENCODERS, policy),
            // SPICE LZ where GLZ cannot go (no dictionary, too big for it).
            ImageCompression::Glz | ImageCompression::Lz => (only(Some(lz_rgb32), None), lossless),
            ImageCompression::Lz4 if policy.lz4 => (only(None, Some(lz4_rgb32)), lossless),
            ImageCompression::Lz4 => (only(Some(lz_rgb32), None), lossless),
            ImageCompression::Off => (
                only(None, None),
                ImagePolicy {
                    force_raw: true,
                    ..lossless
                },
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::{decode_lz4_rgb32, zlib_inflate, GlzWindow};
    use crate::proto::{
        IMAGE_TYPE_BITMAP, IMAGE_TYPE_GLZ_RGB, IMAGE_TYPE_JPEG, IMAGE_TYPE_LZ4, IMAGE_TYPE_LZ_RGB,
        IMAGE_TYPE_ZLIB_GLZ_RGB,
    };

    const TAG: ImageTag = ImageTag { id: 1, flags: 0 };

    fn choice(compression: ImageCompression, zlib_glz: WanCompression) -> ImageChoice {
        ImageChoice::new(ImageOptions {
            compression,
            zlib_glz,
        })
    }

    fn policy(lz4: bool, lossy: bool) -> ImagePolicy {
        ImagePolicy {
            lz4,
            force_raw: false,
            lossy,
        }
    }

    #[test]
    fn each_mode_sends_its_codec() {
        use ImageCompression::*;
        let text = crate::image::samples::desktop_text(256, 128, 1);
        let photo = crate::image::samples::photo(256, 128, 2);
        let cases = [
            (AutoGlz, &text, true, IMAGE_TYPE_GLZ_RGB),
            (AutoGlz, &photo, true, IMAGE_TYPE_JPEG),
            (AutoLz, &text, true, IMAGE_TYPE_LZ_RGB),
            (Glz, &text, true, IMAGE_TYPE_GLZ_RGB),
            (Glz, &photo, true, IMAGE_TYPE_GLZ_RGB),
            (Lz, &photo, true, IMAGE_TYPE_LZ_RGB),
            (Lz4, &text, true, IMAGE_TYPE_LZ4),
            (Off, &text, true, IMAGE_TYPE_BITMAP),
        ];
        for (mode, px, lossy, want) in cases {
            let c = choice(mode, WanCompression::Never);
            let dict = c.dictionary(7, 1, 1 << 20);
            assert_eq!(dict.is_some(), matches!(mode, AutoGlz | Glz), "{mode:?}");
            let img = c.encode(
                TAG,
                256,
                128,
                px,
                policy(true, lossy),
                dict.as_ref().map(|d| (d, 0)),
                None,
            );
            assert_eq!(img[8], want, "{mode:?}");
        }
        // LZ4 to a client without the capability: SPICE LZ.
        let c = choice(Lz4, WanCompression::Never);
        let img = c.encode(TAG, 256, 128, &text, policy(false, false), None, None);
        assert_eq!(img[8], IMAGE_TYPE_LZ_RGB);
        let lz4 = c.encode(TAG, 256, 128, &text, policy(true, false), None, None);
        let n = u32::from_le_bytes(lz4[18..22].try_into().unwrap()) as usize;
        assert_eq!(decode_lz4_rgb32(&lz4[22..22 + n], 256, 128).unwrap(), text);
    }

    #[test]
    fn glz_goes_only_to_clients_with_a_window_and_is_shared_per_session() {
        let c = choice(ImageCompression::AutoGlz, WanCompression::Auto);
        // spice-html5: no window.
        assert!(c.dictionary(1, 0, 0).is_none());
        let a = c.dictionary(1, 1, 1 << 20).unwrap();
        let b = c.dictionary(1, 1, 1 << 20).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        // Another session (or dictionary id) gets its own.
        let other = c.dictionary(2, 1, 1 << 20).unwrap();
        assert!(!Arc::ptr_eq(&a, &other));
        // Once nobody holds it, it is gone: a new one starts from id 0.
        drop((a, b, other));
        let fresh = c.dictionary(2, 1, 1 << 20).unwrap();
        assert_eq!(lock(&fresh).next_id(), 0);
    }

    #[test]
    fn zlib_wraps_glz_on_slow_links_when_auto() {
        let text = crate::image::samples::desktop_text(256, 128, 3);
        for (mode, slow, zipped) in [
            (WanCompression::Auto, None, false),
            (WanCompression::Auto, Some(false), false),
            (WanCompression::Auto, Some(true), true),
            (WanCompression::Always, None, true),
            (WanCompression::Never, Some(true), false),
        ] {
            let c = choice(ImageCompression::AutoGlz, mode);
            let dict = c.dictionary(1, 1, 1 << 20).unwrap();
            let img = c.encode(
                TAG,
                256,
                128,
                &text,
                policy(true, false),
                Some((&dict, 0)),
                slow,
            );
            let mut win = GlzWindow::new();
            let glz = if zipped {
                assert_eq!(img[8], IMAGE_TYPE_ZLIB_GLZ_RGB, "{mode:?} {slow:?}");
                let size = u32::from_le_bytes(img[18..22].try_into().unwrap()) as usize;
                let n = u32::from_le_bytes(img[22..26].try_into().unwrap()) as usize;
                assert_eq!(img.len(), 26 + n);
                zlib_inflate(&img[26..], size).unwrap()
            } else {
                assert_eq!(img[8], IMAGE_TYPE_GLZ_RGB, "{mode:?} {slow:?}");
                img[22..].to_vec()
            };
            assert_eq!(win.decode(&glz).unwrap().pixels, text);
        }
    }

    #[test]
    fn a_glz_image_not_sent_takes_no_id() {
        // Photo-like and lossy allowed: JPEG wins, so the GLZ attempt is
        // dropped and the next GLZ image still has id 0.
        let c = choice(ImageCompression::AutoGlz, WanCompression::Never);
        let dict = c.dictionary(1, 1, 1 << 20).unwrap();
        let photo = crate::image::samples::photo(256, 128, 2);
        let img = c.encode(
            TAG,
            256,
            128,
            &photo,
            policy(true, true),
            Some((&dict, 0)),
            None,
        );
        assert_eq!(img[8], IMAGE_TYPE_JPEG);
        assert_eq!(lock(&dict).next_id(), 0);
        let text = crate::image::samples::desktop_text(64, 64, 3);
        let img = c.encode(
            TAG,
            64,
            64,
            &text,
            policy(true, true),
            Some((&dict, 0)),
            None,
        );
        assert_eq!(img[8], IMAGE_TYPE_GLZ_RGB);
        assert_eq!(GlzWindow::new().decode(&img[22..]).unwrap().id, 0);
    }
}
