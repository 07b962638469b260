#!/bin/busybox sh
# /init of the spicebox Linux test guest (packed into the initramfs by
# images::linux_guest with a static busybox). It reports what the kernel found
# on COM1 in lines "SBX <kind> ..." that the tests match (the kinds are the
# LINUX_GUEST_* constants in images/src/linux_guest.rs), runs the actions named
# by spicebox.actions=a,b,... on the kernel command line, then powers off.
/bin/busybox mkdir -p /proc /sys /dev /tmp
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
# Kernel messages stay in the log (reported below), off COM1: a printk in the
# middle of a report line would break it.
dmesg -n 1
# Stdout and stderr go to COM1 whatever /dev/console is.
exec >/dev/ttyS0 2>&1 </dev/ttyS0

say() { echo "SBX $*"; }
say init uptime=$(cut -d' ' -f1 /proc/uptime)

report_pci() {
  for d in /sys/bus/pci/devices/*; do
    [ -e "$d/vendor" ] || continue
    drv=-
    [ -e "$d/driver" ] && drv=$(basename "$(readlink "$d/driver")")
    v=$(cat "$d/vendor"); p=$(cat "$d/device"); c=$(cat "$d/class")
    say pci "$(basename "$d")" "id=${v#0x}:${p#0x}" "class=${c#0x}" "driver=$drv"
  done
}

report_drivers_dmesg() {
  dmesg | grep -iE 'qxl|drm|fbcon|virtio|vd[a-z]|intel8x0|snd|ac97|xhci|usb|hid|input|serio|i8042|hvc' |
    while IFS= read -r line; do say dmesg "$line"; done
}

report_drm() {
  for c in /sys/class/drm/card*; do
    [ -e "$c" ] || continue
    name=$(basename "$c")
    case "$name" in
      *-*)
        modes=$(tr '\n' ',' < "$c/modes")
        say drm-connector "$name" "status=$(cat "$c/status")" "modes=${modes%,}" ;;
      *)
        drv=-
        [ -e "$c/device/driver" ] && drv=$(basename "$(readlink "$c/device/driver")")
        say drm-card "$name" "driver=$drv" ;;
    esac
  done
  for f in /sys/class/graphics/fb*; do
    [ -e "$f/name" ] && say fb "$(basename "$f")" "name=$(cat "$f/name")" "size=$(cat "$f/virtual_size")"
  done
}

report_input() {
  [ -e /proc/bus/input/devices ] || return 0
  while IFS= read -r line; do
    [ -n "$line" ] && say input "$line"
  done < /proc/bus/input/devices
}

report_virtio_ports() {
  for p in /sys/class/virtio-ports/*; do
    [ -e "$p" ] && say vport "$(basename "$p")" "name=$(cat "$p/name" 2>/dev/null)"
  done
}

report_sound() {
  [ -e /proc/asound/cards ] || return 0
  while IFS= read -r line; do say asound "$line"; done < /proc/asound/cards
}

report_usb() {
  for u in /sys/bus/usb/devices/*; do
    [ -e "$u" ] || continue
    drv=-
    [ -e "$u/driver" ] && drv=$(basename "$(readlink "$u/driver")")
    if [ -e "$u/idVendor" ]; then
      say usb "$(basename "$u")" "id=$(cat "$u/idVendor"):$(cat "$u/idProduct")" \
        "driver=$drv" "product=$(cat "$u/product" 2>/dev/null)"
    else
      say usb-if "$(basename "$u")" "class=$(cat "$u/bInterfaceClass" 2>/dev/null)" "driver=$drv"
    fi
  done
}

report_block() {
  for b in /sys/block/*; do
    [ -e "$b/size" ] && say block "$(basename "$b")" "sectors=$(cat "$b/size")"
  done
}

# fbpage: a known page on the framebuffer console (tty1): bands of 8 text rows
# in red, green, blue and grey backgrounds (erase-line fills a whole row with
# the current background), then a line of text. Tests find the bands in a
# screenshot of the SPICE display.
action_fbpage() {
  echo 0 > /sys/class/graphics/fbcon/cursor_blink 2>/dev/null
  {
    printf '\033[?25l\033[0m\033[2J\033[H'
    for colour in 41 42 44 47; do
      i=0
      while [ $i -lt 8 ]; do
        printf '\033[%sm\033[K\n' "$colour"
        i=$((i + 1))
      done
    done
    printf '\033[0m\033[Kspicebox linux guest fbcon page\n'
  } > /dev/tty1
  say action fbpage done
}

# blkread: checksum of the whole first virtio disk, to compare with the host's.
action_blkread() {
  for dev in /dev/vda /dev/sda; do
    [ -b "$dev" ] && say action blkread "$dev" "md5=$(md5sum < "$dev" | cut -d' ' -f1)"
  done
  say action blkread done
}

# hold: wait (at most 300 s) for a line on COM1 before going on, so that a test
# can look at the screen first.
action_hold() {
  say action hold waiting
  read -t 300 line
  say action hold done
}

report_pci
report_drivers_dmesg
report_drm
report_input
report_virtio_ports
report_sound
report_usb
report_block
say report done uptime=$(cut -d' ' -f1 /proc/uptime)

for word in $(cat /proc/cmdline); do
  case "$word" in
    spicebox.actions=*) actions=${word#spicebox.actions=} ;;
  esac
done
for a in $(echo "$actions" | tr ',' ' '); do
  case "$a" in
    fbpage) action_fbpage ;;
    blkread) action_blkread ;;
    hold) action_hold ;;
    *) say action "$a" unknown ;;
  esac
done

say poweroff
poweroff -f
