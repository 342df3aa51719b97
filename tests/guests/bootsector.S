/* A 512-byte MBR boot sector for firmware (disk) boot tests: it prints a marker on COM1,
 * then halts. */
    .code16
    .globl _start
_start:
    cli
    xor %ax, %ax
    mov %ax, %ds
    mov $msg, %si
    mov $0x3f8, %dx
1:  lodsb
    test %al, %al
    jz 2f
    out %al, %dx
    jmp 1b
2:  hlt
    jmp 2b
msg:
    .asciz "virtkit: booted from disk\r\n"
    .org 510
    .word 0xaa55
