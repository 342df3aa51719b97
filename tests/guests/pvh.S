/* A vmlinux-shaped test kernel entered through PVH: 32-bit flat mode, paging off, %ebx = hvm_start_info. */
        .section .head, "ax"
        .code32
        .globl pvh_start
pvh_start:
        movl $2, %edi
        movl %ebx, %esi
        jmp enter_long_mode

        .section .note.Xen, "a"
        .align 4
        .long 4                         /* namesz: "Xen\0" */
        .long 8                         /* descsz */
        .long 18                        /* XEN_ELFNOTE_PHYS32_ENTRY */
        .asciz "Xen"
        .align 4
        .quad pvh_start
