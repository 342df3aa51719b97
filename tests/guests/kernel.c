/* A tiny test kernel: reports over COM1 what the VMM handed it, then does what its command line asks.
 * Entered by boot64.S (Linux 64-bit or 32-bit boot protocol) or pvh.S (PVH). Keep it small: KVM-PVM
 * emulates it at about a million instructions per second. */
typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long u64;

#define COM1 0x3f8

static inline void outb(u16 port, u8 v) { __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port)); }
static inline u8 inb(u16 port) { u8 v; __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline void outl(u16 port, u32 v) { __asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port)); }
static inline u32 rd32(u64 a) { return *(volatile u32 *)a; }
static inline u64 rd64(u64 a) { return *(volatile u64 *)a; }

static void putc(char c) {
    while (!(inb(COM1 + 5) & 0x20)) {}
    outb(COM1, (u8)c);
}
static void puts(const char *s) { while (*s) putc(*s++); }
static void puthex(u64 v, int digits) {
    puts("0x");
    for (int i = digits - 1; i >= 0; i--) putc("0123456789abcdef"[(v >> (4 * i)) & 0xf]);
}
static void putdec(u64 v) {
    char buf[24]; int n = 0;
    do { buf[n++] = (char)('0' + v % 10); v /= 10; } while (v);
    while (n) putc(buf[--n]);
}

static const char *cmdline = "";
static int has(const char *word) {            /* is `word` a token of the command line? */
    for (const char *p = cmdline; *p; ) {
        while (*p == ' ') p++;
        const char *w = word;
        const char *q = p;
        while (*w && *q == *w) { q++; w++; }
        if (!*w && (*q == ' ' || *q == 0 || *q == '=')) return 1;
        while (*p && *p != ' ') p++;
    }
    return 0;
}
static u64 number_after(const char *word) {   /* the N of `word=N`, or 0 */
    for (const char *p = cmdline; *p; p++) {
        const char *w = word; const char *q = p;
        while (*w && *q == *w) { q++; w++; }
        if (!*w && *q == '=' && (p == cmdline || p[-1] == ' ')) {
            u64 v = 0;
            for (q++; *q >= '0' && *q <= '9'; q++) v = v * 10 + (u64)(*q - '0');
            return v;
        }
    }
    return 0;
}

/* ACPI, below: where PM1a lives and the S5 sleep type, once acpi_find() has read the tables */
static u16 pm1a_evt, pm1a_cnt;
static u32 slp_typ = 0xff;
static int acpi_find(u64 hinted_rsdp);
static void acpi_poweroff(void);

static void report_e820(u64 table, u32 count, u32 stride) {
    puts("e820: count="); putdec(count); putc('\n');
    for (u32 i = 0; i < count; i++) {
        u64 e = table + (u64)i * stride;
        puts("e820: "); puthex(rd64(e), 16); putc(' '); puthex(rd64(e + 8), 16); putc(' ');
        putdec(rd32(e + 16)); putc('\n');
    }
}
static void report_initrd(u64 addr, u64 size) {
    u32 sum = 0;
    for (u64 i = 0; i < size; i++) sum = sum * 31 + *(volatile u8 *)(addr + i);
    puts("initrd: addr="); puthex(addr, 8); puts(" size="); putdec(size);
    puts(" sum="); puthex(sum, 8); putc('\n');
}

/* --- interrupts: IDT, 8259 PIC, the UART's receive and transmit-empty interrupts --------------------- */
struct gate { u16 lo; u16 sel; u8 ist; u8 type; u16 mid; u32 hi; u32 zero; } __attribute__((packed));
static struct gate idt[256] __attribute__((aligned(16)));
extern char isr_stub_32[], isr_stub_36[], isr_stub_41[], isr_stub_255[];
static volatile u32 thre_irqs, rx_irqs, quit, power_pressed;
static u16 sci_port;  /* PM1a_EVT when the echo loop listens for the ACPI power button */
extern char isr_stub_64[];
static volatile u32 msi_irqs;
static void lapic_eoi(void);

static void set_gate(int vec, void *fn, u16 cs) {
    u64 a = (u64)fn;
    idt[vec] = (struct gate){ (u16)a, cs, 0, 0x8e, (u16)(a >> 16), (u32)(a >> 32), 0 };
}

static void irq_setup(void) {
    u16 cs; __asm__ volatile("mov %%cs, %0" : "=r"(cs));
    for (int v = 0; v < 256; v++) set_gate(v, isr_stub_255, cs);
    set_gate(32, isr_stub_32, cs);
    set_gate(36, isr_stub_36, cs);
    set_gate(41, isr_stub_41, cs);
    set_gate(64, isr_stub_64, cs);
    struct { u16 limit; u64 base; } __attribute__((packed)) idtr = { sizeof(idt) - 1, (u64)idt };
    __asm__ volatile("lidt %0" : : "m"(idtr));
    outb(0x20, 0x11); outb(0xa0, 0x11);          /* ICW1: edge, cascade, ICW4 */
    outb(0x21, 0x20); outb(0xa1, 0x28);          /* vectors 0x20 and 0x28 */
    outb(0x21, 0x04); outb(0xa1, 0x02);
    outb(0x21, 0x01); outb(0xa1, 0x01);
    outb(0x21, 0xeb); outb(0xa1, 0xfd);          /* IRQ 4 (COM1), IRQ 2 (cascade) and IRQ 9 (ACPI SCI) */
}

static void echo(u8 c) {
    puts("echo: "); putc((char)c); putc('\n');
    if (c == 'q') quit = 1;
}

void isr(u32 vector) {
    if (vector == 36) {
        for (;;) {
            u8 iir = inb(COM1 + 2);
            if (iir & 1) break;
            if ((iir & 0x0e) == 0x04 || (iir & 0x0e) == 0x0c) {
                rx_irqs++;
                while (inb(COM1 + 5) & 1) echo(inb(COM1));
            } else if ((iir & 0x0e) == 0x02) {
                thre_irqs++;
                outb(COM1 + 1, 0x01);            /* one transmit-empty interrupt is enough: keep receive only */
            } else {
                inb(COM1 + 5); inb(COM1 + 6);
            }
        }
        outb(0x20, 0x20);
        return;
    }
    if (vector == 32) { outb(0x20, 0x20); return; }
    if (vector == 64) { msi_irqs++; lapic_eoi(); return; }
    if (vector == 41) {
        u16 sts; __asm__ volatile("inw %1, %0" : "=a"(sts) : "Nd"(sci_port));
        if (sci_port && (sts & 0x100)) {
            __asm__ volatile("outw %0, %1" : : "a"((u16)0x100), "Nd"(sci_port));   /* write 1 to clear */
            power_pressed = 1;
        }
        outb(0xa0, 0x20); outb(0x20, 0x20);
        return;
    }
    puts("unexpected interrupt or exception\n");
    for (;;) __asm__ volatile("cli; hlt");
}

static void echo_loop(u64 rsdp) {
    irq_setup();
    if (has("powerbutton") && acpi_find(rsdp)) {
        sci_port = pm1a_evt;
        __asm__ volatile("outw %0, %1" : : "a"((u16)0x100), "Nd"((u16)(pm1a_evt + 2)));  /* PWRBTN_EN */
    }
    outb(COM1 + 1, 0x03);                        /* IER: receive + transmit-empty */
    __asm__ volatile("sti");
    while (!thre_irqs) __asm__ volatile("hlt");
    puts("thre: irq ok\n");
    puts("echo: ready\n");
    while (!quit && !power_pressed) __asm__ volatile("hlt");
    __asm__ volatile("cli");
    if (power_pressed) { puts("acpi: power button\n"); acpi_poweroff(); }
    puts("echo: irqs="); putdec(rx_irqs); putc('\n');
}

static void garbage(void) {
    u32 x = 12345;
    for (u32 port = 0; port < 0x10000; port++) {
        if (port >= 0x60 && port <= 0x64) continue;            /* 0xfe at 0x64 would reset, legitimately */
        if (port >= 0x20 && port <= 0x21) continue;            /* keep our own PIC sane */
        if (port >= COM1 && port < COM1 + 8) continue;
        if (port >= 0x600 && port <= 0x605) continue;          /* ACPI PM1: S5 would power off, legitimately */
        x = x * 1103515245 + 12345;
        if (port & 1) outb((u16)port, (u8)(x >> 16)); else inb((u16)port);
    }
    outl(0xcf8, 0x80000000); outl(0xcfc, 0xdeadbeef);
    static const u64 mmio[] = { 0xc0000000, 0xd0000000, 0xfe000000, 0xfeb00000, 0xffff0000 };
    for (unsigned i = 0; i < sizeof(mmio) / sizeof(mmio[0]); i++) {
        *(volatile u32 *)mmio[i] = 0xdeadbeef;
        x += *(volatile u32 *)mmio[i];
        *(volatile u64 *)(mmio[i] + 8) = 0x0123456789abcdefUL;
        *(volatile u8 *)(mmio[i] + 3) = 0x5a;
    }
    puts("garbage: done "); puthex(x & 0xff, 2); putc('\n');
}

/* --- ACPI: find the FADT through the RSDP, check every checksum, power off through PM1a_CNT ------------ */
static int sum_ok(u64 a, u32 len) { u8 sum = 0; for (u32 i = 0; i < len; i++) sum += *(volatile u8 *)(a + i); return sum == 0; }
static int sig_is(u64 a, const char *sig) { for (int i = 0; i < 4; i++) if (*(volatile u8 *)(a + i) != (u8)sig[i]) return 0; return 1; }

static int acpi_find(u64 hinted_rsdp) {
    u64 rsdp = hinted_rsdp;
    for (u64 a = 0xe0000; !rsdp && a < 0x100000; a += 16)
        if (rd64(a) == 0x2052545020445352UL) rsdp = a;            /* "RSD PTR " */
    if (!rsdp) { puts("acpi: no rsdp\n"); return 0; }
    int ok = sum_ok(rsdp, 20) && sum_ok(rsdp, rd32(rsdp + 20));
    u64 xsdt = rd64(rsdp + 24), fadt = 0;
    ok = ok && sig_is(xsdt, "XSDT") && sum_ok(xsdt, rd32(xsdt + 4));
    for (u32 i = 0; i < (rd32(xsdt + 4) - 36) / 8; i++)
        if (sig_is(rd64(xsdt + 36 + 8 * i), "FACP")) fadt = rd64(xsdt + 36 + 8 * i);
    if (!fadt) { puts("acpi: no fadt\n"); return 0; }
    u64 dsdt = rd64(fadt + 140);
    ok = ok && sum_ok(fadt, rd32(fadt + 4)) && sig_is(dsdt, "DSDT") && sum_ok(dsdt, rd32(dsdt + 4));
    u32 s5 = 0;                                                   /* Name (_S5_, Package { BytePrefix n, ... }) */
    for (u32 i = 36; !s5 && i + 4 < rd32(dsdt + 4); i++)
        if (sig_is(dsdt + i, "_S5_")) s5 = i + 4;
    for (u32 j = s5; s5 && j + 1 < rd32(dsdt + 4); j++) {
        if (*(volatile u8 *)(dsdt + j) == 0x0a) { slp_typ = *(volatile u8 *)(dsdt + j + 1); break; }
    }
    pm1a_evt = (u16)rd32(fadt + 56);
    pm1a_cnt = (u16)rd32(fadt + 64);
    puts("acpi: rsdp="); puthex(rsdp, 5); puts(" pm1a_cnt="); puthex(pm1a_cnt, 4);
    puts(" s5="); putdec(slp_typ); puts(ok ? " checksums=ok\n" : " checksums=BAD\n");
    return 1;
}

static void acpi_poweroff(void) {
    puts("then: poweroff\n");
    __asm__ volatile("outw %0, %1" : : "a"((u16)((slp_typ << 10) | (1 << 13))), "Nd"(pm1a_cnt));
}

#include "virtio.c"

static void bench(u64 n) {
    puts("bench: start\n");
    for (u64 i = 0; i < n; i++) outb(0x80, (u8)i);
    puts("bench: done\n");
}

void kmain(u32 proto, u64 info) {
    outb(COM1 + 1, 0x00);                        /* no interrupts yet */
    outb(COM1 + 3, 0x80); outb(COM1, 0x01); outb(COM1 + 1, 0x00);
    outb(COM1 + 3, 0x03); outb(COM1 + 2, 0x07); outb(COM1 + 4, 0x0b);
    u64 rsdp = 0;
    if (proto == 2) {
        puts("virtkit-test: entry=pvh\n");
        puts("pvh: magic="); puthex(rd32(info), 8); puts(" version="); putdec(rd32(info + 4));
        puts(" modules="); putdec(rd32(info + 12)); putc('\n');
        cmdline = (const char *)rd64(info + 24);
        rsdp = rd64(info + 32);
        puts("cmdline: "); puts(cmdline); putc('\n');
        report_e820(rd64(info + 40), rd32(info + 48), 24);
        if (rd32(info + 12)) { u64 m = rd64(info + 16); report_initrd(rd64(m), rd64(m + 8)); }
    } else {
        puts(proto == 1 ? "virtkit-test: entry=linux64\n" : "virtkit-test: entry=linux32\n");
        puts("boot_params: loader="); puthex(*(volatile u8 *)(info + 0x210), 2); putc('\n');
        cmdline = (const char *)(rd32(info + 0x228) | ((u64)rd32(info + 0xc8) << 32));
        rsdp = rd64(info + 0x70);
        puts("cmdline: "); puts(cmdline); putc('\n');
        report_e820(info + 0x2d0, *(volatile u8 *)(info + 0x1e8), 20);
        u64 ra = rd32(info + 0x218) | ((u64)rd32(info + 0xc0) << 32);
        u64 rs = rd32(info + 0x21c) | ((u64)rd32(info + 0xc4) << 32);
        if (rs) report_initrd(ra, rs);
    }
    u32 a, b, c, d;
    __asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(0x40000000), "c"(0));
    char sig[13];
    for (int i = 0; i < 4; i++) { sig[i] = (char)(b >> (8 * i)); sig[4 + i] = (char)(c >> (8 * i));
                                  sig[8 + i] = (char)(d >> (8 * i)); }
    sig[12] = 0;
    for (int i = 0; i < 12; i++) if (sig[i] < 0x20 || sig[i] > 0x7e) sig[i] = '.';
    puts("cpuid: 0x40000000="); puts(sig);
    __asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(0x40000001), "c"(0));
    puts(" features="); puthex(a, 8); putc('\n');
    puts("ready\n");
    if (has("garbage")) garbage();
    if (number_after("bench")) bench(number_after("bench"));
    if (has("virtio")) virtio_test(0);
    if (has("virtio-hostile")) virtio_test(1);
    if (has("vconsole")) vconsole_test();
    if (has("virtio-hang")) hang_test();
    if (number_after("rngbench")) rng_bench(number_after("rngbench"));
    if (has("echo")) echo_loop(rsdp);
    if (has("poweroff") && acpi_find(has("scan") ? 0 : rsdp)) acpi_poweroff();
    if (has("reset")) { puts("then: reset\n"); outb(0x64, 0xfe); }
    if (has("triple")) {
        puts("then: triple fault\n");
        struct { u16 limit; u64 base; } __attribute__((packed)) none = { 0, 0 };
        __asm__ volatile("lidt %0; int3" : : "m"(none));
    }
    puts("then: halt\n");
    for (;;) __asm__ volatile("cli; hlt");
}
