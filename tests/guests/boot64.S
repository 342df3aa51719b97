/* A bzImage-shaped test kernel: the 32-bit boot protocol entry at the load address, startup_64 at +0x200. */
        .section .head, "ax"
        .code32
        .globl _start32
_start32:                               /* %esi = boot_params */
        movl $3, %edi
        jmp enter_long_mode

        .org 0x200
        .code64
        .globl startup_64
startup_64:                             /* long mode, identity-mapped; %rsi = boot_params */
        cli
        leaq stack_top(%rip), %rsp
        movl $1, %edi
        call kmain
1:      cli
        hlt
        jmp 1b
