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
# Every process this script starts costs a fork and an exec in the guest
# kernel, which runs at emulated speed on the test hosts (tenths of a second
# each): the reports use shell builtins (read, cd, ${x##*/}) wherever they
# can, but never read loops over long inputs (ash's read takes a byte per
# system call, and each system call is emulated too).
# The name of the driver bound to device directory $1 ("-" if none).
driver_of() {
  drv=-
  if [ -e "$1/driver" ]; then
    cd -P "$1/driver" && drv=${PWD##*/}
    cd /
  fi
}
read -r up _ < /proc/uptime
say init uptime=$up

report_pci() {
  for d in /sys/bus/pci/devices/*; do
    [ -e "$d/vendor" ] || continue
    driver_of "$d"
    read -r v < "$d/vendor"; read -r p < "$d/device"; read -r c < "$d/class"
    say pci "${d##*/}" "id=${v#0x}:${p#0x}" "class=${c#0x}" "driver=$drv"
  done
}

report_drivers_dmesg() {
  # sed, not a read loop: ash's read builtin reads a byte per system call.
  dmesg | grep -iE 'qxl|drm|fbcon|virtio|vd[a-z]|intel8x0|snd|ac97|xhci|usb|hid|input|serio|i8042|hvc' |
    sed 's/^/SBX dmesg /'
}

report_drm() {
  for c in /sys/class/drm/card*; do
    [ -e "$c" ] || continue
    name=${c##*/}
    case "$name" in
      *-*)
        modes=
        while read -r m; do modes="$modes${modes:+,}$m"; done < "$c/modes"
        read -r status < "$c/status"
        say drm-connector "$name" "status=$status" "modes=$modes" ;;
      *)
        driver_of "$c/device"
        say drm-card "$name" "driver=$drv" ;;
    esac
  done
  for f in /sys/class/graphics/fb*; do
    [ -e "$f/name" ] || continue
    read -r n < "$f/name"; read -r size < "$f/virtual_size"
    say fb "${f##*/}" "name=$n" "size=$size"
  done
}

report_input() {
  [ -e /proc/bus/input/devices ] || return 0
  sed -e '/^$/d' -e 's/^/SBX input /' /proc/bus/input/devices
}

report_virtio_ports() {
  for p in /sys/class/virtio-ports/*; do
    [ -e "$p" ] || continue
    n=-
    [ -e "$p/name" ] && read -r n < "$p/name"
    say vport "${p##*/}" "name=$n"
  done
}

report_sound() {
  [ -e /proc/asound/cards ] || return 0
  sed 's/^/SBX asound /' /proc/asound/cards
}

report_usb() {
  for u in /sys/bus/usb/devices/*; do
    [ -e "$u" ] || continue
    driver_of "$u"
    if [ -e "$u/idVendor" ]; then
      read -r v < "$u/idVendor"; read -r p < "$u/idProduct"
      product=-
      [ -e "$u/product" ] && read -r product < "$u/product"
      say usb "${u##*/}" "id=$v:$p" "driver=$drv" "product=$product"
    else
      class=-
      [ -e "$u/bInterfaceClass" ] && read -r class < "$u/bInterfaceClass"
      say usb-if "${u##*/}" "class=$class" "driver=$drv"
    fi
  done
}

report_block() {
  for b in /sys/block/*; do
    [ -e "$b/size" ] || continue
    read -r size < "$b/size"
    say block "${b##*/}" "sectors=$size"
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
    [ -b "$dev" ] || continue
    sum=$(md5sum < "$dev")
    say action blkread "$dev" "md5=${sum%% *}"
  done
  say action blkread done
}

# usbdisk: a block of the redirected USB stick through the stock xhci_hcd,
# usb-storage and sd drivers: sector 40 of /dev/sda in hex (the test compares
# it with the usbredir peer's disk). The stick is attached during the boot;
# enumeration at emulated speed may still be going on, so wait for it (120 s).
action_usbdisk() {
  i=0
  while [ ! -b /dev/sda ] && [ $i -lt 120 ]; do
    sleep 1
    i=$((i + 1))
  done
  if [ ! -b /dev/sda ]; then
    say action usbdisk error=no-disk
    return
  fi
  hex=$(dd if=/dev/sda bs=512 skip=40 count=1 2>/dev/null | od -An -v -tx1 | tr -d ' \n')
  say action usbdisk lba=40 data=$hex
  say action usbdisk done
}

# vport: talk to a SPICE client through the agent port as spice-vdagent
# would, with the stock virtio_console driver (com.redhat.spice.0). Opening the port connects the
# agent (PORT_OPEN); after a line on COM1 (the test's client is connected and
# has sent AGENT_START) /init writes one VD_AGENT_ANNOUNCE_CAPABILITIES
# message framed as spice-vdagent frames it (VDIChunkHeader port 1, size 28;
# VDAgentMessage protocol 1, type 6, opaque 0, size 8; request 0, caps
# 0x00000a5a) and reports, in hex, the first 36 bytes the client sends back
# (one chunk header and a message with 8 bytes of data).
action_vport() {
  # No udev here to make /dev/virtio-ports/com.redhat.spice.0: find the
  # vportNpM whose name it is (devtmpfs made its node).
  port=
  for p in /sys/class/virtio-ports/*; do
    [ -e "$p/name" ] || continue
    read -r n < "$p/name"
    [ "$n" = com.redhat.spice.0 ] && port=/dev/${p##*/}
  done
  # A failed redirection of exec would end /init (and panic the kernel).
  if [ ! -c "$port" ]; then
    say action vport error=no-port
    return
  fi
  exec 3<>"$port"
  say action vport waiting
  read -t 300 line
  printf '\001\000\000\000\034\000\000\000\001\000\000\000\006\000\000\000\000\000\000\000\000\000\000\000\010\000\000\000\000\000\000\000\132\012\000\000' >&3
  say action vport sent
  got=$(timeout 120 head -c 36 <&3 | od -An -v -tx1 | tr -d ' \n')
  say action vport rx="$got"
  exec 3<&-
  say action vport done
}

# input: the events the virtio keyboard and tablet deliver through evdev.
# /init opens both event nodes itself (fds 4 and 5, so that nothing sent after
# "ready" is lost to a slow fork), says it is ready, and copies exactly as many
# events as the test sends (keyboard 4: key down, syn, key up, syn; tablet 6:
# abs x, abs y, button down, syn, button up, syn), at most 120 s; then it
# reports each struct input_event (24 bytes: timeval, type, code, value) in hex.
action_input() {
  kbd=; tablet=
  for e in /sys/class/input/event*; do
    [ -e "$e/device/name" ] || continue
    read -r n < "$e/device/name"
    case "$n" in
      'QEMU Virtio Keyboard') kbd=/dev/input/${e##*/} ;;
      'QEMU Virtio Tablet') tablet=/dev/input/${e##*/} ;;
    esac
  done
  if [ ! -c "$kbd" ] || [ ! -c "$tablet" ]; then
    say action input error=no-device keyboard=$kbd tablet=$tablet
    return
  fi
  exec 4<"$kbd" 5<"$tablet"
  timeout 120 head -c 96 <&4 > /tmp/keyboard &
  timeout 120 head -c 144 <&5 > /tmp/tablet &
  exec 4<&- 5<&-
  say action input ready
  wait
  for dev in keyboard tablet; do
    od -An -v -w24 -tx1 /tmp/$dev | tr -d ' ' | sed "s/^/SBX action input $dev /"
  done
  say action input done
}

# wav: a 440 Hz tone through the stock snd_intel8x0 driver, played by
# /bin/tone (images/linux/tone.c: ALSA's PCM ioctls, no alsa-lib) for 10 s once
# a line on COM1 says the test's SPICE client listens.
action_wav() {
  if [ ! -c /dev/snd/pcmC0D0p ]; then
    say action wav error=no-pcm
    return
  fi
  say action wav waiting
  read -t 300 line
  out=$(tone /dev/snd/pcmC0D0p 440 10)
  say action wav $out
  say action wav done
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
read -r up _ < /proc/uptime
say report done uptime=$up

read -r cmdline < /proc/cmdline
actions=
for word in $cmdline; do
  case "$word" in
    spicebox.actions=*) actions=${word#spicebox.actions=} ;;
  esac
done
IFS=,
set -- $actions
IFS=' '
for a in "$@"; do
  case "$a" in
    fbpage) action_fbpage ;;
    blkread) action_blkread ;;
    usbdisk) action_usbdisk ;;
    vport) action_vport ;;
    input) action_input ;;
    wav) action_wav ;;
    hold) action_hold ;;
    *) say action "$a" unknown ;;
  esac
done

say poweroff
poweroff -f
