;; A test handler that attacks the host's memory in ways a language's
;; allocator never does, written directly as a component (WebAssembly text,
;; which the host compiles like a binary component). The first byte of the
;; request chooses:
;;
;; - `t`: grows a table by 200 million elements (1.6 GB of host memory if
;;   nothing stops it);
;; - `m`: grows eight memories besides its own by 124 MiB each (1 GB);
;; - anything else: returns a plan with no operations, kind `calm`.
;;
;; Every request gets no ordering key.
(component
  (type $types-interface
    (instance
      (type $destination (enum "object-store" "table"))
      (export "destination" (type $d (eq $destination)))
      (type $context (record (field "key" string) (field "destination" $d)))
      (export "context" (type $c (eq $context)))
      (type $put (record (field "key" string) (field "document" string)))
      (export "put" (type $p (eq $put)))
      (type $operation (variant (case "put" $p) (case "delete" string)))
      (export "operation" (type $o (eq $operation)))
      (type $plan (record (field "kind" string) (field "operations" (list $o))))
      (export "plan" (type (eq $plan)))
      (type $rejection (record (field "reason" string)))
      (export "rejection" (type (eq $rejection)))
    )
  )
  (import "widgets:handler/types@0.1.0" (instance $types (type $types-interface)))
  (alias export $types "context" (type $context))
  (alias export $types "plan" (type $plan))
  (alias export $types "rejection" (type $rejection))

  ;; One more memory, empty until `grow` is called.
  (core module $Grower
    (memory (export "memory") 0)
    (func (export "grow") (result i32)
      ;; 1,984 pages of 64 KiB: 124 MiB.
      (memory.grow (i32.const 1984))))
  (core instance $g1 (instantiate $Grower))
  (core instance $g2 (instantiate $Grower))
  (core instance $g3 (instantiate $Grower))
  (core instance $g4 (instantiate $Grower))
  (core instance $g5 (instantiate $Grower))
  (core instance $g6 (instantiate $Grower))
  (core instance $g7 (instantiate $Grower))
  (core instance $g8 (instantiate $Grower))

  (core module $Main
    (import "g1" "grow" (func $grow1 (result i32)))
    (import "g2" "grow" (func $grow2 (result i32)))
    (import "g3" "grow" (func $grow3 (result i32)))
    (import "g4" "grow" (func $grow4 (result i32)))
    (import "g5" "grow" (func $grow5 (result i32)))
    (import "g6" "grow" (func $grow6 (result i32)))
    (import "g7" "grow" (func $grow7 (result i32)))
    (import "g8" "grow" (func $grow8 (result i32)))
    (memory (export "memory") 1)
    (table $table 1 funcref)
    ;; Where `realloc` hands out memory next: a bump allocator, enough for
    ;; the host's copy of one request.
    (global $next (mut i32) (i32.const 1024))
    (data (i32.const 16) "calm")

    (func (export "cabi_realloc") (param i32 i32) (param $align i32) (param $size i32) (result i32)
      (local $at i32)
      (local.set $at
        (i32.and
          (i32.add (global.get $next) (i32.sub (local.get $align) (i32.const 1)))
          (i32.sub (i32.const 0) (local.get $align))))
      (global.set $next (i32.add (local.get $at) (local.get $size)))
      ;; Grow the memory when the request does not fit.
      (if (i32.gt_u (global.get $next) (i32.mul (memory.size) (i32.const 65536)))
        (then
          (if (i32.eq
                (memory.grow
                  (i32.add
                    (i32.div_u (i32.sub (global.get $next) (i32.mul (memory.size) (i32.const 65536)))
                               (i32.const 65536))
                    (i32.const 1)))
                (i32.const -1))
            (then unreachable))))
      (local.get $at))

    ;; option<string>: none.
    (func (export "ordering-key") (param i32 i32) (result i32)
      (i32.store8 (i32.const 64) (i32.const 0))
      (i32.const 64))

    (func (export "handle") (param $request i32) (param $length i32) (param i32 i32 i32) (result i32)
      (local $first i32)
      (if (local.get $length)
        (then (local.set $first (i32.load8_u (local.get $request)))))
      ;; `t`: a table bomb.
      (if (i32.eq (local.get $first) (i32.const 116))
        (then (drop (table.grow $table (ref.null func) (i32.const 200000000)))))
      ;; `m`: many memories.
      (if (i32.eq (local.get $first) (i32.const 109))
        (then
          (drop (call $grow1)) (drop (call $grow2)) (drop (call $grow3)) (drop (call $grow4))
          (drop (call $grow5)) (drop (call $grow6)) (drop (call $grow7)) (drop (call $grow8))))
      ;; ok(plan { kind: "calm", operations: [] }), laid out at 128.
      (i32.store8 (i32.const 128) (i32.const 0))
      (i32.store (i32.const 132) (i32.const 16))
      (i32.store (i32.const 136) (i32.const 4))
      (i32.store (i32.const 140) (i32.const 0))
      (i32.store (i32.const 144) (i32.const 0))
      (i32.const 128)))

  (core instance $main (instantiate $Main
    (with "g1" (instance $g1)) (with "g2" (instance $g2))
    (with "g3" (instance $g3)) (with "g4" (instance $g4))
    (with "g5" (instance $g5)) (with "g6" (instance $g6))
    (with "g7" (instance $g7)) (with "g8" (instance $g8))))
  (alias core export $main "memory" (core memory $memory))
  (alias core export $main "cabi_realloc" (core func $realloc))

  (type $ordering-key-type (func (param "request" (list u8)) (result (option string))))
  (func $ordering-key (type $ordering-key-type)
    (canon lift (core func $main "ordering-key") (memory $memory) (realloc $realloc) string-encoding=utf8))
  (export "ordering-key" (func $ordering-key))

  (type $handle-result (result $plan (error $rejection)))
  (type $handle-type (func (param "request" (list u8)) (param "ctx" $context) (result $handle-result)))
  (func $handle (type $handle-type)
    (canon lift (core func $main "handle") (memory $memory) (realloc $realloc) string-encoding=utf8))
  (export "handle" (func $handle))
)
