mod rtp_header;
mod sdes;
mod sdp;
mod srtp;
