//! Pre-encoded media: PCMU (raw mu-law), Opus (Ogg) and VP8 (IVF) files made once by ffmpeg
//! (bench/media.sh), cut into RTP payloads with their send times and RTP timestamps.

use anyhow::{bail, Context, Result};
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    Pcmu,
    Opus,
    Vp8,
}

impl Codec {
    pub fn clock_rate(self) -> u32 {
        match self {
            Codec::Pcmu => 8000,
            Codec::Opus => 48000,
            Codec::Vp8 => 90000,
        }
    }
}

/// One packet of a looped schedule.
#[derive(Debug, Clone)]
pub struct Item {
    pub payload: Vec<u8>,
    /// Send time within the period.
    pub at_ns: u64,
    /// RTP timestamp offset within the period.
    pub ts: u32,
    pub marker: bool,
    /// The first packet of a tone burst (mixer scenarios record its send time).
    pub onset: bool,
}

/// A looped packet schedule: `items` repeat every `period_ns`, timestamps advance `ts_period`.
#[derive(Debug, Clone)]
pub struct Source {
    pub items: Vec<Item>,
    pub period_ns: u64,
    pub ts_period: u32,
}

const PTIME_NS: u64 = 20_000_000;

fn audio_source(codec: Codec, packets: Vec<Vec<u8>>, onsets: &[usize]) -> Source {
    let spp = codec.clock_rate() / 50;
    let n = packets.len();
    let items = packets
        .into_iter()
        .enumerate()
        .map(|(i, payload)| Item {
            payload,
            at_ns: i as u64 * PTIME_NS,
            ts: i as u32 * spp,
            marker: false,
            onset: onsets.contains(&i),
        })
        .collect();
    Source { items, period_ns: n as u64 * PTIME_NS, ts_period: n as u32 * spp }
}

/// Raw mu-law bytes cut into 20 ms (160 byte) payloads.
pub fn pcmu_packets(path: &Path) -> Result<Vec<Vec<u8>>> {
    let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    if data.len() < 160 {
        bail!("{} holds less than one 20 ms PCMU packet", path.display());
    }
    Ok(data.chunks_exact(160).map(|c| c.to_vec()).collect())
}

/// Opus packets from an Ogg file (RFC 7845), without the OpusHead and OpusTags headers.
pub fn opus_packets(path: &Path) -> Result<Vec<Vec<u8>>> {
    let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let mut packets = Vec::new();
    let mut cur: Vec<u8> = Vec::new();
    let mut pos = 0;
    while pos + 27 <= data.len() {
        if &data[pos..pos + 4] != b"OggS" {
            bail!("{}: no Ogg page at byte {pos}", path.display());
        }
        let nsegs = data[pos + 26] as usize;
        let table = &data[pos + 27..pos + 27 + nsegs];
        let mut body = pos + 27 + nsegs;
        for &len in table {
            let len = len as usize;
            cur.extend_from_slice(&data[body..body + len]);
            body += len;
            if len < 255 {
                packets.push(std::mem::take(&mut cur));
            }
        }
        pos = body;
    }
    let packets: Vec<Vec<u8>> =
        packets.into_iter().filter(|p| !p.starts_with(b"OpusHead") && !p.starts_with(b"OpusTags")).collect();
    if packets.is_empty() {
        bail!("{}: no Opus packets", path.display());
    }
    Ok(packets)
}

/// A continuous tone: every payload carries audio, suitable for forwarding scenarios.
pub fn tone(codec: Codec, dir: &Path) -> Result<Source> {
    let packets = match codec {
        Codec::Pcmu => pcmu_packets(&dir.join("tone.ulaw"))?,
        Codec::Opus => opus_packets(&dir.join("tone.opus.ogg"))?,
        Codec::Vp8 => bail!("tone() is for audio"),
    };
    Ok(audio_source(codec, packets, &[]))
}

/// One second: `burst` packets of tone then silence. The first tone packet is an onset.
pub fn bursts(codec: Codec, dir: &Path, burst: usize) -> Result<Source> {
    let (tone, silence) = match codec {
        Codec::Pcmu => (pcmu_packets(&dir.join("tone.ulaw"))?, vec![vec![0xffu8; 160]]),
        Codec::Opus => (opus_packets(&dir.join("tone.opus.ogg"))?, opus_packets(&dir.join("silence.opus.ogg"))?),
        Codec::Vp8 => bail!("bursts() is for audio"),
    };
    let packets = (0..50)
        .map(|i| if i < burst { tone[i % tone.len()].clone() } else { silence[i % silence.len()].clone() })
        .collect();
    Ok(audio_source(codec, packets, &[0]))
}

/// Only silence (listeners in mixer scenarios still send, as phones do).
pub fn silence(codec: Codec, dir: &Path) -> Result<Source> {
    let packets = match codec {
        Codec::Pcmu => vec![vec![0xffu8; 160]; 50],
        Codec::Opus => opus_packets(&dir.join("silence.opus.ogg"))?,
        Codec::Vp8 => bail!("silence() is for audio"),
    };
    Ok(audio_source(codec, packets, &[]))
}

/// VP8 frames from an IVF file, packetized per RFC 7741 (1-byte descriptor, S bit on the first
/// packet of a frame, marker on the last), at most `mtu` payload bytes per packet.
pub fn vp8(dir: &Path, mtu: usize) -> Result<Source> {
    let path = dir.join("video.ivf");
    let data = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    if data.len() < 32 || &data[0..4] != b"DKIF" {
        bail!("{} is not an IVF file", path.display());
    }
    let hdr_len = u16::from_le_bytes([data[6], data[7]]) as usize;
    let rate = u32::from_le_bytes(data[16..20].try_into()?) as u64;
    let scale = u32::from_le_bytes(data[20..24].try_into()?) as u64;
    let frame_ns = (1_000_000_000 * scale).checked_div(rate).unwrap_or(33_333_333);
    let ts_step = (90_000 * frame_ns / 1_000_000_000) as u32;
    let mut items = Vec::new();
    let mut pos = hdr_len;
    let mut frame = 0u64;
    let max = mtu - 1;
    while pos + 12 <= data.len() {
        let size = u32::from_le_bytes(data[pos..pos + 4].try_into()?) as usize;
        pos += 12;
        if pos + size > data.len() {
            break;
        }
        let f = &data[pos..pos + size];
        pos += size;
        let k = f.len().div_ceil(max).max(1);
        let chunk = f.len().div_ceil(k);
        let chunks: Vec<&[u8]> = f.chunks(chunk.max(1)).collect();
        let last = chunks.len() - 1;
        for (i, c) in chunks.into_iter().enumerate() {
            let mut p = Vec::with_capacity(c.len() + 1);
            p.push(if i == 0 { 0x10 } else { 0x00 });
            p.extend_from_slice(c);
            // Room for the stamp at the end.
            while p.len() < 1 + crate::util::STAMP_LEN + 8 {
                p.push(0);
            }
            items.push(Item {
                payload: p,
                at_ns: frame * frame_ns,
                ts: frame as u32 * ts_step,
                marker: i == last,
                onset: false,
            });
        }
        frame += 1;
    }
    if frame == 0 {
        bail!("{}: no frames", path.display());
    }
    Ok(Source { items, period_ns: frame * frame_ns, ts_period: frame as u32 * ts_step })
}

/// Payload bits per second of a source (for the report).
pub fn bitrate(src: &Source) -> f64 {
    let bytes: usize = src.items.iter().map(|i| i.payload.len()).sum();
    bytes as f64 * 8.0 / (src.period_ns as f64 / 1e9)
}

pub fn packets_per_second(src: &Source) -> f64 {
    src.items.len() as f64 / (src.period_ns as f64 / 1e9)
}

/// G.711 mu-law to linear PCM.
pub fn ulaw_to_linear(u: u8) -> i16 {
    let u = !u;
    let sign = u & 0x80;
    let exponent = (u >> 4) & 0x07;
    let mantissa = u & 0x0f;
    let mut sample = (((mantissa as i32) << 3) + 0x84) << exponent;
    sample -= 0x84;
    (if sign != 0 { -sample } else { sample }) as i16
}

/// libopus, opened at run time (libopus0 is a GStreamer dependency; no -dev package needed).
pub mod opus {
    use std::ffi::{c_int, c_void, CString};
    use std::sync::OnceLock;

    type Create = unsafe extern "C" fn(i32, c_int, *mut c_int) -> *mut c_void;
    type Decode = unsafe extern "C" fn(*mut c_void, *const u8, i32, *mut i16, c_int, c_int) -> c_int;
    type Destroy = unsafe extern "C" fn(*mut c_void);

    struct Lib {
        create: Create,
        decode: Decode,
        destroy: Destroy,
    }

    fn lib() -> Option<&'static Lib> {
        static LIB: OnceLock<Option<Lib>> = OnceLock::new();
        LIB.get_or_init(|| unsafe {
            let name = CString::new("libopus.so.0").ok()?;
            let h = libc::dlopen(name.as_ptr(), libc::RTLD_NOW);
            if h.is_null() {
                return None;
            }
            let sym = |s: &str| {
                let c = CString::new(s).ok()?;
                let p = libc::dlsym(h, c.as_ptr());
                (!p.is_null()).then_some(p)
            };
            Some(Lib {
                create: std::mem::transmute::<*mut c_void, Create>(sym("opus_decoder_create")?),
                decode: std::mem::transmute::<*mut c_void, Decode>(sym("opus_decode")?),
                destroy: std::mem::transmute::<*mut c_void, Destroy>(sym("opus_decoder_destroy")?),
            })
        })
        .as_ref()
    }

    pub fn available() -> bool {
        lib().is_some()
    }

    /// A mono 48 kHz decoder.
    pub struct Decoder {
        st: *mut c_void,
        pcm: Vec<i16>,
    }

    // The decoder state is only used from the thread that owns the Decoder.
    unsafe impl Send for Decoder {}

    impl Decoder {
        pub fn new() -> Option<Decoder> {
            let l = lib()?;
            let mut err: c_int = 0;
            let st = unsafe { (l.create)(48000, 1, &mut err) };
            (!st.is_null() && err == 0).then(|| Decoder { st, pcm: vec![0; 5760] })
        }

        pub fn decode(&mut self, data: &[u8]) -> &[i16] {
            let Some(l) = lib() else { return &[] };
            let n = unsafe {
                (l.decode)(self.st, data.as_ptr(), data.len() as i32, self.pcm.as_mut_ptr(), self.pcm.len() as c_int, 0)
            };
            if n <= 0 {
                return &[];
            }
            &self.pcm[..n as usize]
        }
    }

    impl Drop for Decoder {
        fn drop(&mut self) {
            if let Some(l) = lib() {
                unsafe { (l.destroy)(self.st) }
            }
        }
    }
}
