// SPDX-License-Identifier: (MIT OR GPL-2.0)
// In-kernel forwarding of two-party plain-RTP calls: a TC (cls_bpf, direct-action) program on the
// ingress of the legs' interface. docs/sip-gateway.md says when it applies, and
// src/runtime/kernel/ how the bridge fills its maps. Dual-licensed: bpf_fib_lookup and
// bpf_redirect are GPL-only helpers, and the kernel loads only a GPL-compatible program.
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

// The packet as it arrives: peer -> leg. Addresses and ports in network byte order.
struct fwd_key {
	__u32 src_addr;
	__u32 dst_addr;
	__u16 src_port;
	__u16 dst_port;
};

// Written by the bridge only. Addresses, ports and SSRCs in network byte order.
struct fwd_rule {
	__u32 new_src_addr;
	__u32 new_dst_addr;
	__u16 new_src_port;
	__u16 new_dst_port;
	__u32 in_ssrc;   // only this stream; another SSRC is a restart user space must see
	__u32 out_ssrc;
	__u32 ts_offset; // host order, added to the timestamp
	__u16 seq_offset; // host order, added to the sequence number
	__u16 pad16;
	__u8 in_pt;      // the one codec: telephone-event, CN and the rest go to user space
	__u8 out_pt;
	__u8 redirect;   // 0: loopback, the stack delivers; 1: bpf_fib_lookup + bpf_redirect
	__u8 pad;
};

// Written by this program only (the bridge reads it and deletes it with its rule).
struct fwd_stats {
	__u64 packets;
	__u64 bytes;      // UDP payload bytes, as a leg socket would have read them
	__u64 last_ns;    // bpf_ktime_get_ns (CLOCK_MONOTONIC) of the newest packet
	__u32 last_seq;   // host order, as it arrived; the bridge starts it at the newest it saw
	__u32 last_ts;    // host order, as it arrived
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct fwd_key);
	__type(value, struct fwd_rule);
} sb_rules SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct fwd_key);
	__type(value, struct fwd_stats);
} sb_stats SEC(".maps");

#define IP_CSUM_OFF (ETH_HLEN + offsetof(struct iphdr, check))
#define IP_SRC_OFF (ETH_HLEN + offsetof(struct iphdr, saddr))
#define IP_DST_OFF (ETH_HLEN + offsetof(struct iphdr, daddr))
// A reordered packet this far behind, or a jump this far ahead, is left to user space, which
// tells a restart from loss (RFC 3550 A.1's limits, as the forwarder uses them).
#define MAX_MISORDER 100
#define MAX_DROPOUT 3000

static __always_inline int replace4(struct __sk_buff *skb, __u32 l4_csum, __u32 off, __u32 old, __u32 new, int pseudo)
{
	if (old == new)
		return 0;
	if (pseudo && bpf_l3_csum_replace(skb, IP_CSUM_OFF, old, new, 4))
		return -1;
	if (bpf_l4_csum_replace(skb, l4_csum, old, new, 4 | BPF_F_MARK_MANGLED_0 | (pseudo ? BPF_F_PSEUDO_HDR : 0)))
		return -1;
	return bpf_skb_store_bytes(skb, off, &new, 4, 0);
}

static __always_inline int replace2(struct __sk_buff *skb, __u32 l4_csum, __u32 off, __u16 old, __u16 new)
{
	if (old == new)
		return 0;
	if (bpf_l4_csum_replace(skb, l4_csum, old, new, 2 | BPF_F_MARK_MANGLED_0))
		return -1;
	return bpf_skb_store_bytes(skb, off, &new, 2, 0);
}

SEC("classifier")
int sb_rtp_fwd(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP))
		return TC_ACT_UNSPEC;
	struct iphdr *ip = (void *)(eth + 1);
	// No IP options and no fragments: a header of 20 bytes keeps the offsets below constant.
	if ((void *)(ip + 1) > end || ip->ihl != 5 || ip->protocol != IPPROTO_UDP ||
	    (ip->frag_off & bpf_htons(0x3fff)))
		return TC_ACT_UNSPEC;
	struct udphdr *udp = (void *)(ip + 1);
	// The RTP fixed header: 12 bytes.
	__u8 *rtp = (void *)(udp + 1);
	if ((void *)(rtp + 12) > end)
		return TC_ACT_UNSPEC;
	struct fwd_key key = {
		.src_addr = ip->saddr, .dst_addr = ip->daddr, .src_port = udp->source, .dst_port = udp->dest,
	};
	struct fwd_rule *rule = bpf_map_lookup_elem(&sb_rules, &key);
	if (!rule)
		return TC_ACT_UNSPEC;
	// Version 2 with no padding, extension or CSRC (user space would send none of them), and
	// the rule's one codec as payload type (the marker bit aside). RTCP
	// (PT 200-204 with the marker bit) never matches an audio payload type below 128.
	if (rtp[0] != 0x80 || (rtp[1] & 0x7f) != rule->in_pt)
		return TC_ACT_UNSPEC;
	__u32 in_ssrc = *(__u32 *)(rtp + 8);
	if (in_ssrc != rule->in_ssrc)
		return TC_ACT_UNSPEC;
	__u16 seq_be = *(__u16 *)(rtp + 2);
	__u32 ts_be = *(__u32 *)(rtp + 4);
	__u16 seq = bpf_ntohs(seq_be);
	struct fwd_stats *st = bpf_map_lookup_elem(&sb_stats, &key);
	if (!st)
		return TC_ACT_UNSPEC;
	__s16 ahead = (__s16)(seq - (__u16)st->last_seq);
	if (ahead < -MAX_MISORDER || ahead > MAX_DROPOUT)
		return TC_ACT_UNSPEC;

	struct bpf_fib_lookup fib = {};
	if (rule->redirect) {
		// Off loopback the stack would not route a packet now addressed elsewhere: find the
		// next hop first, and leave anything unroutable to user space untouched.
		fib.family = 2; // AF_INET
		fib.l4_protocol = IPPROTO_UDP;
		fib.tot_len = bpf_ntohs(ip->tot_len);
		fib.ipv4_src = rule->new_src_addr;
		fib.ipv4_dst = rule->new_dst_addr;
		fib.ifindex = skb->ingress_ifindex;
		if (bpf_fib_lookup(skb, &fib, sizeof(fib), BPF_FIB_LOOKUP_OUTPUT) != BPF_FIB_LKUP_RET_SUCCESS)
			return TC_ACT_UNSPEC;
	}

	// Copies: the helpers below invalidate every packet pointer.
	__u32 old_saddr = ip->saddr, old_daddr = ip->daddr;
	__u16 old_sport = udp->source, old_dport = udp->dest;
	__u16 old_flags = *(__u16 *)rtp; // V/P/X/CC and M/PT
	__u16 udp_len = bpf_ntohs(udp->len);
	__u32 rtp_off = ETH_HLEN + sizeof(struct iphdr) + sizeof(struct udphdr);
	__u32 l4_csum = ETH_HLEN + sizeof(struct iphdr) + offsetof(struct udphdr, check);
	__u32 udp_off = ETH_HLEN + sizeof(struct iphdr);

	__u16 new_flags = old_flags;
	((__u8 *)&new_flags)[1] = (((__u8 *)&old_flags)[1] & 0x80) | rule->out_pt;
	__u16 new_seq = bpf_htons((__u16)(seq + rule->seq_offset));
	__u32 new_ts = bpf_htonl(bpf_ntohl(ts_be) + rule->ts_offset);

	if (replace4(skb, l4_csum, IP_SRC_OFF, old_saddr, rule->new_src_addr, 1) ||
	    replace4(skb, l4_csum, IP_DST_OFF, old_daddr, rule->new_dst_addr, 1) ||
	    replace2(skb, l4_csum, udp_off + offsetof(struct udphdr, source), old_sport, rule->new_src_port) ||
	    replace2(skb, l4_csum, udp_off + offsetof(struct udphdr, dest), old_dport, rule->new_dst_port) ||
	    replace2(skb, l4_csum, rtp_off, old_flags, new_flags) ||
	    replace2(skb, l4_csum, rtp_off + 2, seq_be, new_seq) ||
	    replace4(skb, l4_csum, rtp_off + 4, ts_be, new_ts, 0) ||
	    replace4(skb, l4_csum, rtp_off + 8, in_ssrc, rule->out_ssrc, 0))
		return TC_ACT_SHOT; // half rewritten: it must not reach anyone

	__sync_fetch_and_add(&st->packets, 1);
	__sync_fetch_and_add(&st->bytes, udp_len - sizeof(struct udphdr));
	st->last_ns = bpf_ktime_get_ns();
	// Only the newest moves the continuation point, as in user space's forwarder.
	if (ahead > 0) {
		st->last_seq = seq;
		st->last_ts = bpf_ntohl(ts_be);
	}

	if (!rule->redirect)
		// On loopback the rewritten packet goes on up this very stack, which now delivers it to
		// the other peer's socket: no redirect, and no MAC to fix.
		return TC_ACT_OK;
	data = (void *)(long)skb->data;
	end = (void *)(long)skb->data_end;
	eth = data;
	if ((void *)(eth + 1) > end)
		return TC_ACT_SHOT;
	__builtin_memcpy(eth->h_dest, fib.dmac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, fib.smac, ETH_ALEN);
	return bpf_redirect(fib.ifindex, 0);
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
