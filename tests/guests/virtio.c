/* Included by kernel.c: finds the virtio-pci functions on bus 0 through ports 0xCF8/0xCFC, drives
 * virtio-rng like a driver does (MSI-X to the local APIC, vector 0x40), and with `virtio-hostile` throws
 * malformed queues and garbage at it, checking that the device only ever asks for a reset. */

static inline u32 inl(u16 port) { u32 v; __asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static u32 pci_read(u32 slot, u32 reg) { outl(0xcf8, 0x80000000u | slot << 11 | reg); return inl(0xcfc); }
static void pci_write(u32 slot, u32 reg, u32 v) { outl(0xcf8, 0x80000000u | slot << 11 | reg); outl(0xcfc, v); }

struct vq_desc { u64 addr; u32 len; u16 flags; u16 next; };
struct common_cfg {
    u32 device_feature_select, device_feature, driver_feature_select, driver_feature;
    u16 config_msix_vector, num_queues; u8 device_status, config_generation;
    u16 queue_select, queue_size, queue_msix_vector, queue_enable, queue_notify_off;
    u32 queue_desc_lo, queue_desc_hi, queue_driver_lo, queue_driver_hi, queue_device_lo, queue_device_hi;
};
#define QSIZE 8
static struct vq_desc vq_desc[QSIZE] __attribute__((aligned(4096)));
static volatile u16 vq_avail[3 + QSIZE] __attribute__((aligned(4096)));
static volatile u32 vq_used[1 + 2 * QSIZE + 1] __attribute__((aligned(4096)));
static u8 rng_buf[64] __attribute__((aligned(64)));

static volatile struct common_cfg *vcommon;
static volatile u8 *vnotify;
static u64 vbar, vmsix_table;
static u32 vnotify_mult, vnotify_off;

static void lapic_eoi(void) { *(volatile u32 *)0xfee000b0 = 0; }

static void zero(volatile void *p, u64 n) { for (u64 i = 0; i < n; i++) ((volatile u8 *)p)[i] = 0; }

static int virtio_find(u32 want) {               /* the slot of the first virtio function with device id `want` */
    int found = -1;
    for (u32 slot = 0; slot < 32; slot++) {
        u32 id = pci_read(slot, 0);
        if (id == 0xffffffff) continue;
        puts("pci: 00:"); puthex(slot, 2); puts(".0 "); puthex(id & 0xffff, 4); putc(':'); puthex(id >> 16, 4);
        puts(" class="); puthex(pci_read(slot, 8) >> 8, 6); putc('\n');
        if (id == (0x1af4 | want << 16) && found < 0) found = (int)slot;
    }
    return found;
}

static int virtio_setup(u32 slot) {              /* map the capabilities, turn on decoding and MSI-X */
    vbar = pci_read(slot, 0x10) & ~0xfu;
    pci_write(slot, 4, pci_read(slot, 4) | 0x6);
    u32 notify_mult = 0;
    for (u32 ptr = pci_read(slot, 0x34) & 0xff; ptr; ptr = (pci_read(slot, ptr) >> 8) & 0xff) {
        u32 head = pci_read(slot, ptr);
        if ((head & 0xff) == 0x11) {
            u32 table = pci_read(slot, ptr + 4);
            vmsix_table = (pci_read(slot, 0x10 + 4 * (table & 7)) & ~0xfu) + (table & ~7u);
            pci_write(slot, ptr, head | 0x80000000u);      /* MSI-X enable */
        } else if ((head & 0xff) == 0x09) {
            u32 type = (head >> 24) & 0xff, off = pci_read(slot, ptr + 8);
            if (type == 1) vcommon = (volatile struct common_cfg *)(vbar + off);
            if (type == 2) { vnotify = (volatile u8 *)(vbar + off); notify_mult = pci_read(slot, ptr + 16); vnotify_mult = notify_mult; }
        }
    }
    puts("virtio: bar0="); puthex(vbar, 8); puts(" notify_mult="); putdec(notify_mult);
    puts(vcommon && vnotify && vmsix_table ? " caps=ok\n" : " caps=MISSING\n");
    return vcommon && vnotify && vmsix_table;
}

static u8 virtio_start(u64 desc, u64 avail, u64 used) {      /* reset and bring the device up; status */
    zero(vq_desc, sizeof(vq_desc)); zero(vq_avail, sizeof(vq_avail)); zero(vq_used, sizeof(vq_used));
    vcommon->device_status = 0;
    vcommon->device_status = 1;
    vcommon->device_status = 3;
    vcommon->driver_feature_select = 1; vcommon->driver_feature = 1;   /* VIRTIO_F_VERSION_1 */
    vcommon->driver_feature_select = 0; vcommon->driver_feature = 0;
    vcommon->device_status = 0xb;
    if (!(vcommon->device_status & 8)) return vcommon->device_status;
    volatile u32 *entry = (volatile u32 *)vmsix_table;
    entry[0] = 0xfee00000; entry[1] = 0; entry[2] = 0x40; entry[3] = 0;   /* vector 0x40 to CPU 0 */
    vcommon->queue_select = 0;
    vcommon->queue_size = QSIZE;
    vcommon->queue_msix_vector = 0;
    vcommon->queue_desc_lo = (u32)desc; vcommon->queue_desc_hi = (u32)(desc >> 32);
    vcommon->queue_driver_lo = (u32)avail; vcommon->queue_driver_hi = (u32)(avail >> 32);
    vcommon->queue_device_lo = (u32)used; vcommon->queue_device_hi = (u32)(used >> 32);
    vnotify_off = vcommon->queue_notify_off * vnotify_mult;
    vcommon->queue_enable = 1;
    vcommon->device_status = 0xf;
    return vcommon->device_status;
}

static void vq_offer(u16 head, u16 count) {
    vq_avail[2 + (vq_avail[1] % QSIZE)] = head;
    __asm__ volatile("" ::: "memory");
    vq_avail[1] = (u16)(vq_avail[1] + count);
    *(volatile u16 *)(vnotify + vnotify_off) = 0;
}

static int rng_round_trip(const char *who) {
    u8 status = virtio_start((u64)vq_desc, (u64)vq_avail, (u64)vq_used);
    for (u32 i = 0; i < sizeof(rng_buf); i++) rng_buf[i] = 0;
    vq_desc[0] = (struct vq_desc){ (u64)rng_buf, sizeof(rng_buf), 2, 0 };
    u32 before = msi_irqs;
    vq_offer(0, 1);
    for (u32 spin = 0; (vq_used[0] >> 16) == 0 && spin < 1000000; spin++) __asm__ volatile("pause");
    for (u32 spin = 0; msi_irqs == before && spin < 100000; spin++) __asm__ volatile("pause");
    u32 got = (vq_used[0] >> 16) ? vq_used[2] : 0, nonzero = 0;
    for (u32 i = 0; i < sizeof(rng_buf); i++) nonzero += rng_buf[i] != 0;
    puts(who); puts(": status="); puthex(status, 2); puts(" used="); putdec(vq_used[0] >> 16);
    puts(" bytes="); putdec(got); puts(" nonzero="); putdec(nonzero > sizeof(rng_buf) / 2);
    puts(" msi="); putdec(msi_irqs - before); putc('\n');
    return got == sizeof(rng_buf);
}

static void hostile_case(const char *what, u64 desc, u64 avail, u64 used, int kind) {
    u8 status = virtio_start(desc, avail, used);
    if (kind == 0) {                                           /* a descriptor loop */
        vq_desc[0] = (struct vq_desc){ (u64)rng_buf, 8, 3, 1 };
        vq_desc[1] = (struct vq_desc){ (u64)rng_buf, 8, 3, 0 };
        vq_offer(0, 1);
    } else if (kind == 1) {                                    /* DMA far outside RAM */
        vq_desc[0] = (struct vq_desc){ 0x7f0000000000ul, 16, 2, 0 };
        vq_offer(0, 1);
    } else if (kind == 2) {                                    /* DMA that runs off the end of RAM */
        vq_desc[0] = (struct vq_desc){ (u64)rng_buf, 0xfffffff0u, 2, 0 };
        vq_offer(0, 1);
    } else if (kind == 3) {                                    /* an available index far ahead */
        vq_desc[0] = (struct vq_desc){ (u64)rng_buf, 8, 2, 0 };
        vq_offer(0, 100);
    } else if (kind == 4) {                                    /* a buffer the device would have to read */
        vq_desc[0] = (struct vq_desc){ (u64)rng_buf, 8, 0, 0 };
        vq_offer(0, 1);
    } else if (kind == 5) {                                    /* next index outside the queue */
        vq_desc[0] = (struct vq_desc){ (u64)rng_buf, 8, 3, 200 };
        vq_offer(0, 1);
    }                                                          /* kind 6: the rings themselves outside RAM */
    /* the device may serve notifications on another host thread (ioeventfd): give it a moment */
    for (u32 spin = 0; !(vcommon->device_status & 0x40) && spin < 20000; spin++) __asm__ volatile("pause");
    puts("hostile: "); puts(what); puts(" start="); puthex(status, 2);
    puts(" status="); puthex(vcommon->device_status, 2); puts(" used="); putdec(vq_used[0] >> 16); putc('\n');
}

static void virtio_test(int hostile) {
    irq_setup();
    *(volatile u32 *)0xfee000f0 = 0x1ff;                       /* local APIC on, spurious vector 0xff */
    __asm__ volatile("sti");
    int slot = virtio_find(0x1044);
    if (slot < 0) { puts("virtio: no rng\n"); return; }
    if (!virtio_setup((u32)slot)) return;
    rng_round_trip("virtio-rng");
    if (!hostile) return;
    hostile_case("loop", (u64)vq_desc, (u64)vq_avail, (u64)vq_used, 0);
    hostile_case("outside-ram", (u64)vq_desc, (u64)vq_avail, (u64)vq_used, 1);
    hostile_case("oversize", (u64)vq_desc, (u64)vq_avail, (u64)vq_used, 2);
    hostile_case("avail-jump", (u64)vq_desc, (u64)vq_avail, (u64)vq_used, 3);
    hostile_case("wrong-direction", (u64)vq_desc, (u64)vq_avail, (u64)vq_used, 4);
    hostile_case("bad-next", (u64)vq_desc, (u64)vq_avail, (u64)vq_used, 5);
    hostile_case("rings-outside-ram", 0x7f0000000000ul, 0x7f0000001000ul, 0xfffffffffffff000ul, 6);
    u32 x = 99;                                                /* garbage over the whole BAR */
    for (u32 off = 0; off < 0x8000; off += 4) {
        x = x * 1103515245 + 12345;
        if (off >= 0x4000 && off < 0x4010) continue;          /* keep our MSI-X entry pointing at the APIC */
        *(volatile u32 *)(vbar + off) = x;
        x += *(volatile u32 *)(vbar + ((x >> 8) & 0x7ffc));
    }
    puts("hostile: garbage done\n");
    rng_round_trip("hostile: after");
}

static void rng_bench(u64 n) {                   /* n requests of 64 bytes, one notify and one MSI-X each */
    irq_setup();
    *(volatile u32 *)0xfee000f0 = 0x1ff;
    __asm__ volatile("sti");
    int slot = virtio_find(0x1044);
    if (slot < 0 || !virtio_setup((u32)slot)) { puts("rngbench: no device\n"); return; }
    virtio_start((u64)vq_desc, (u64)vq_avail, (u64)vq_used);
    u32 msi_before = msi_irqs;
    puts("rngbench: start\n");
    for (u64 i = 0; i < n; i++) {
        vq_desc[i % QSIZE] = (struct vq_desc){ (u64)rng_buf, sizeof(rng_buf), 2, 0 };
        vq_offer((u16)(i % QSIZE), 1);
        while ((u16)(vq_used[0] >> 16) != (u16)(i + 1)) __asm__ volatile("pause");
    }
    puts("rngbench: done\n");
    puts("rngbench: requests="); putdec(n); puts(" msi="); putdec(msi_irqs - msi_before); putc('\n');
}

/* --- virtio-console with MULTIPORT: the handshake Linux does, then echo what the host sends on port 1 --- */
struct vq {
    struct vq_desc desc[QSIZE];
    volatile u16 avail[3 + QSIZE];
    u16 pad[5];
    volatile u32 used[1 + 2 * QSIZE + 1];
    u16 next_desc, seen_used;
} __attribute__((aligned(4096)));
static struct vq cq[6];
static u8 cbuf[6][QSIZE][64] __attribute__((aligned(64)));
static volatile u8 *cnotify;                      /* the console's notify area (vnotify is the last device set up) */
static u32 cnotify_mult;

static void cq_offer(u32 q, u8 *buf, u32 len, u16 flags) {
    struct vq *v = &cq[q];
    u16 d = v->next_desc++ % QSIZE;
    v->desc[d] = (struct vq_desc){ (u64)buf, len, flags, 0 };
    v->avail[2 + (v->avail[1] % QSIZE)] = d;
    __asm__ volatile("" ::: "memory");
    v->avail[1] = (u16)(v->avail[1] + 1);
    *(volatile u16 *)(cnotify + q * cnotify_mult) = (u16)q;
}

static void cq_send(u32 q, const u8 *data, u32 len) {
    struct vq *v = &cq[q];
    u8 *buf = cbuf[q][v->next_desc % QSIZE];
    for (u32 i = 0; i < len && i < 64; i++) buf[i] = data[i];
    cq_offer(q, buf, len, 0);
}

static void control(u32 id, u16 event, u16 value) {
    u8 m[8] = { (u8)id, (u8)(id >> 8), (u8)(id >> 16), (u8)(id >> 24), (u8)event, (u8)(event >> 8),
                (u8)value, (u8)(value >> 8) };
    cq_send(3, m, 8);
}

static int cq_used(u32 q, u32 *id, u32 *len) {     /* the next used element of queue q, if any */
    struct vq *v = &cq[q];
    if ((u16)(v->used[0] >> 16) == v->seen_used) return 0;
    u32 slot = v->seen_used++ % QSIZE;
    *id = v->used[1 + 2 * slot]; *len = v->used[2 + 2 * slot];
    return 1;
}

static int vconsole_up(void) {                  /* the handshake; 1 when port 1 is named and open */
    int slot = virtio_find(0x1043);
    if (slot < 0 || !virtio_setup((u32)slot)) { puts("vconsole: no device\n"); return 0; }
    cnotify = vnotify; cnotify_mult = vnotify_mult;
    vcommon->device_status = 0; vcommon->device_status = 3;
    vcommon->driver_feature_select = 1; vcommon->driver_feature = 1;
    vcommon->driver_feature_select = 0; vcommon->driver_feature = 2;          /* MULTIPORT */
    vcommon->device_status = 0xb;
    puts("vconsole: queues="); putdec(vcommon->num_queues);
    puts(" max_nr_ports="); putdec(*(volatile u32 *)(vbar + 0x2000 + 4)); putc('\n');
    for (u32 q = 0; q < 6; q++) {
        vcommon->queue_select = (u16)q; vcommon->queue_size = QSIZE; vcommon->queue_msix_vector = 0xffff;
        u64 d = (u64)cq[q].desc, a = (u64)cq[q].avail, u = (u64)cq[q].used;
        vcommon->queue_desc_lo = (u32)d; vcommon->queue_desc_hi = 0;
        vcommon->queue_driver_lo = (u32)a; vcommon->queue_driver_hi = 0;
        vcommon->queue_device_lo = (u32)u; vcommon->queue_device_hi = 0;
        vcommon->queue_enable = 1;
    }
    vcommon->device_status = 0xf;
    for (u32 i = 0; i < QSIZE; i++) cq_offer(2, cbuf[2][i], 64, 2);       /* control receive buffers */
    cq_offer(4, cbuf[4][0], 64, 2);                                          /* port 1 receive buffer */
    control(0, 0, 1);                                                        /* DEVICE_READY */
    int named = 0, host_open = 0, console = 0;
    for (u32 spin = 0; !(named && host_open && console) && spin < 2000000; spin++) {
        u32 id, len;
        if (!cq_used(2, &id, &len)) { __asm__ volatile("pause"); continue; }
        u8 *m = (u8 *)cq[2].desc[id % QSIZE].addr;
        u32 port = m[0]; u16 event = (u16)(m[4] | m[5] << 8), value = (u16)(m[6] | m[7] << 8);
        if (event == 1) { control(port, 3, 1); }                             /* DEVICE_ADD -> PORT_READY */
        else if (event == 4) { console = 1; control(port, 6, 1); }          /* CONSOLE_PORT -> PORT_OPEN */
        else if (event == 7) {                                               /* PORT_NAME */
            puts("vconsole: port"); putdec(port); puts(" name=");
            for (u32 i = 8; i < len; i++) putc((char)m[i]);
            putc('\n');
            named = 1;
            control(port, 6, 1);                                             /* a process opens it */
        } else if (event == 6 && port == 1 && value) host_open = 1;
    }
    puts(named && host_open && console ? "vconsole: ready\n" : "vconsole: handshake FAILED\n");
    return named && host_open && console;
}

static void vconsole_test(void) {
    if (!vconsole_up()) return;
    cq_send(1, (const u8 *)"hvc0 says hi\r\n", 14);                          /* the console port */
    u32 id, len;
    u32 spin = 0;
    while (!cq_used(4, &id, &len) && spin++ < 50000000) __asm__ volatile("pause");
    if (spin >= 50000000) { puts("vconsole: nothing from the host\n"); return; }
    u8 reply[64] = "echo:";
    for (u32 i = 0; i < len && i < 58; i++) reply[5 + i] = cbuf[4][0][i];
    cq_send(5, reply, 5 + len);
    puts("vconsole: got "); putdec(len); puts(" bytes\n");
}

/* --- issue 17: the hang sequence against a running VMM, while echoing on the agent port ------------------- */
#define HANG_DESC  0x400000ul                   /* room for 65535 descriptors, avail and used rings */
#define HANG_AVAIL 0x500000ul
#define HANG_USED  0x540000ul
#define HANG_SIZE  256                          /* the rng's maximum: the largest queue a device serves */

static void echo_agent(void) {                  /* what arrived on port 1 goes back as "echo:..." */
    u32 id, len;
    if (!cq_used(4, &id, &len)) return;
    u8 reply[64] = "echo:";
    for (u32 i = 0; i < len && i < 58; i++) reply[5 + i] = cbuf[4][0][i];
    cq_send(5, reply, 5 + len);
    cq_offer(4, cbuf[4][0], 64, 2);
}

static void hang_fill(volatile struct vq_desc *d, volatile u16 *avail, u32 n) {
    for (u32 i = 0; i < n; i++)                 /* every descriptor chained, zero-length, device-writable */
        d[i] = (struct vq_desc){ (u64)rng_buf, 0, i + 1 < n ? 3 : 2, (u16)(i + 1) };
    for (u32 i = 0; i < n; i++) avail[2 + i] = 0; /* every avail entry names head 0 */
}

static void hang_test(void) {
    irq_setup();
    *(volatile u32 *)0xfee000f0 = 0x1ff;
    __asm__ volatile("sti");
    if (!vconsole_up()) return;
    cq_offer(4, cbuf[4][0], 64, 2);
    int slot = virtio_find(0x1044);
    if (slot < 0 || !virtio_setup((u32)slot)) { puts("hang: no rng\n"); return; }
    rng_round_trip("hang: rng");
    volatile struct vq_desc *d = (volatile struct vq_desc *)HANG_DESC;
    volatile u16 *avail = (volatile u16 *)HANG_AVAIL;
    volatile u32 *used = (volatile u32 *)HANG_USED;
    /* 1. DRIVER_OK cleared without a reset, then a queue of 65535 nobody validated, flooded */
    vcommon->device_status = 0xb;
    vcommon->queue_select = 0;
    vcommon->queue_size = 0xffff;
    vcommon->queue_desc_lo = (u32)HANG_DESC; vcommon->queue_desc_hi = 0;
    vcommon->queue_driver_lo = (u32)HANG_AVAIL; vcommon->queue_driver_hi = 0;
    vcommon->queue_device_lo = (u32)HANG_USED; vcommon->queue_device_hi = 0;
    vcommon->queue_enable = 1;
    zero(avail, 4); zero(used, 4);
    hang_fill(d, avail, 0xffff);
    avail[1] = 0xffff;
    *(volatile u16 *)(vnotify + vnotify_off) = 0;
    puts("hang: toggled status="); puthex(vcommon->device_status, 2);
    puts(" size="); putdec(vcommon->queue_size); puts(" used="); putdec(used[0] >> 16); putc('\n');
    /* 2. after a reset, the largest valid queue flooded the same way, refilled for ever */
    vcommon->device_status = 0; vcommon->device_status = 1; vcommon->device_status = 3;
    vcommon->driver_feature_select = 1; vcommon->driver_feature = 1;
    vcommon->driver_feature_select = 0; vcommon->driver_feature = 0;
    vcommon->device_status = 0xb;
    vcommon->queue_select = 0; vcommon->queue_size = HANG_SIZE; vcommon->queue_msix_vector = 0xffff;
    vcommon->queue_desc_lo = (u32)HANG_DESC; vcommon->queue_desc_hi = 0;
    vcommon->queue_driver_lo = (u32)HANG_AVAIL; vcommon->queue_driver_hi = 0;
    vcommon->queue_device_lo = (u32)HANG_USED; vcommon->queue_device_hi = 0;
    zero(avail, 4); zero(used, 4);
    hang_fill(d, avail, HANG_SIZE);
    vcommon->queue_enable = 1;
    vcommon->device_status = 0xf;
    puts("hang: flooding status="); puthex(vcommon->device_status, 2); putc('\n');
    u32 rounds = 0;
    for (;;) {
        if ((u16)(used[0] >> 16) == avail[1]) { /* all taken: offer a full queue again, notify */
            avail[1] = (u16)(avail[1] + HANG_SIZE);
            *(volatile u16 *)(vnotify + vnotify_off) = 0;
            if (++rounds % 8 == 0) { puts("hang: rounds="); putdec(rounds); putc('\n'); }
        } else {
            *(volatile u16 *)(vnotify + vnotify_off) = 0; /* and notify while it works, as a hostile driver would */
        }
        echo_agent();
        if (vcommon->device_status & 0x40) { puts("hang: NEEDS_RESET\n"); return; }
    }
}
