/* Interrupt entry stubs: save the caller-saved registers, call isr(vector), return with iretq. */
        .section .text
        .code64
        .macro STUB vec
        .globl isr_stub_\vec
isr_stub_\vec:
        pushq %rax
        movl $\vec, %eax
        jmp isr_common
        .endm

        STUB 32
        STUB 36
        STUB 41
        STUB 255

isr_common:
        pushq %rcx
        pushq %rdx
        pushq %rsi
        pushq %rdi
        pushq %r8
        pushq %r9
        pushq %r10
        pushq %r11
        movl %eax, %edi
        call isr
        popq %r11
        popq %r10
        popq %r9
        popq %r8
        popq %rdi
        popq %rsi
        popq %rdx
        popq %rcx
        popq %rax
        iretq
