/* From flat 32-bit protected mode (PVH, or the 32-bit boot protocol) into long mode, then kmain(proto, info).
 * In: %edi = entry protocol id, %esi = its info pointer (start_info or boot_params). */
        .section .text
        .code32
        .globl enter_long_mode
enter_long_mode:
        cli
        /* identity-map the first 1 GiB with 2 MiB pages */
        movl $pdpt, %eax
        orl $3, %eax
        movl %eax, pml4
        movl $pd, %eax
        orl $3, %eax
        movl %eax, pdpt
        xorl %ecx, %ecx
1:      movl %ecx, %eax
        shll $21, %eax
        orl $0x83, %eax
        movl %eax, pd(,%ecx,8)
        incl %ecx
        cmpl $512, %ecx
        jne 1b
        movl $pml4, %eax
        movl %eax, %cr3
        movl %cr4, %eax
        orl $0x20, %eax                 /* PAE */
        movl %eax, %cr4
        movl $0xC0000080, %ecx          /* EFER.LME */
        rdmsr
        orl $0x100, %eax
        wrmsr
        movl %cr0, %eax
        orl $0x80000001, %eax           /* PG | PE */
        movl %eax, %cr0
        lgdt gdt64_ptr
        ljmp $0x08, $2f
        .code64
2:      movw $0x10, %ax
        movw %ax, %ds
        movw %ax, %es
        movw %ax, %ss
        movl %edi, %edi
        movl %esi, %esi
        leaq stack_top(%rip), %rsp
        call kmain
3:      cli
        hlt
        jmp 3b

        .section .rodata
        .align 8
gdt64:  .quad 0
        .quad 0x00af9a000000ffff        /* 0x08: 64-bit code */
        .quad 0x00cf92000000ffff        /* 0x10: data */
gdt64_ptr:
        .word gdt64_ptr - gdt64 - 1
        .long gdt64

        .section .bss
        .align 4096
pml4:   .skip 4096
pdpt:   .skip 4096
pd:     .skip 4096
        .align 16
        .skip 16384
        .globl stack_top
stack_top:
